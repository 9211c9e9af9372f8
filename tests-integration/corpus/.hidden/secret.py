def hidden():
    return None
