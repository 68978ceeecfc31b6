"""Reading and writing checkpoints and sidecars (the only module that touches the file format)."""
