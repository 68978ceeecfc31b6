"""Pruning engines: the code that talks to Torch-Pruning and applies a plan to a model."""
