def ignored_fn():
    """Listed in [ignore] keys: not a trace source."""


def used_fn():
    return 1
