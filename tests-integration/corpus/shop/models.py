"""Classes: methods, nested classes, properties, static and class methods, overloads."""

import functools
import typing


def log_calls(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


class Cart:
    """A class body is not a trace source; its methods are."""

    TAX = 0.2
    rounding = staticmethod(lambda x: round(x, 2))  # a lambda: not a source

    def __init__(self, items=()):
        self._items = list(items)

    @property
    def total(self):
        return sum(self._items)

    @total.setter
    def total(self, value):
        self._items = [value]

    @total.deleter
    def total(self):
        self._items = []

    @staticmethod
    def empty():
        return Cart()

    @classmethod
    def of(cls, *items):
        return cls(items)

    @log_calls
    def add(self, item):
        self._items.append(item)
        return self

    def ignored_method(self):
        return None

    async def checkout(self):
        return self.total

    class Line:
        def __init__(self, sku, qty):
            self.sku, self.qty = sku, qty

        class Price:
            def amount(self):
                return 1

    def __repr__(self):
        return f"Cart({self._items!r})"


@typing.overload
def parse(value: int) -> int: ...
@typing.overload
def parse(value: str) -> str: ...
def parse(value):
    return value


class _Private:
    def __mangled(self):
        return "qualname keeps the unmangled name"

    def call(self):
        return self.__mangled()
