"""Non-ASCII identifiers and a non-ASCII module name."""


def grüße(name):
    return f"Grüße, {name}"


class Größe:
    def maß(self):
        return 1
