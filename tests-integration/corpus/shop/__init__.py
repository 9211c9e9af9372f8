"""A package whose __init__ defines functions: its module is `shop`."""


def package_level():
    return "shop"
