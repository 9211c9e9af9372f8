def generated():
    return None
