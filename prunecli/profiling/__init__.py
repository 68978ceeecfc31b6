"""Counting (params, MACs) and measuring (latency, memory) models."""
