"""(placeholder, being written)"""


def sync_attention(model):
    return {}
