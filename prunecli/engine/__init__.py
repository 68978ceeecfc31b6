"""Explicit training, fine-tuning and evaluation loops (no framework)."""
