# -*- coding: latin-1 -*-
"""A PEP 263 encoding declaration: café."""


def latin1_function():
    return "déjà vu"
