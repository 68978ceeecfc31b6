"""Method registry (filled in by the pruning work)."""


def list_methods():
    return []
