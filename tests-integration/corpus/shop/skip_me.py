def in_an_ignored_file():
    return None
