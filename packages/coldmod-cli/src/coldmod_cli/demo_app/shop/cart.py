"""A shopping cart."""

from __future__ import annotations

from shop.catalog import Product, format_price


class Cart:
    """Products and quantities, and what they cost."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[Product, int]] = {}

    def add(self, product: Product, quantity: int = 1) -> None:
        """Add ``quantity`` of ``product``."""
        _, had = self.items.get(product.id, (product, 0))
        self.items[product.id] = (product, had + quantity)

    def total(self) -> int:
        """The total in cents."""
        return sum(product.price * quantity for product, quantity in self.items.values())

    def summary(self) -> str:
        """One line per product, then the total."""
        lines = [f"{q} x {p.name}" for p, q in self.items.values()]
        return "\n".join([*lines, f"total: {format_price(self.total())}"])

    def apply_coupon(self, code: str) -> int:
        """The total after a coupon; the coupon form was never launched."""
        return self.total() * 90 // 100 if code == "WELCOME10" else self.total()

    def merge(self, other: Cart) -> None:
        """Add another cart's items (for carts of guests who log in; there are no logins)."""
        for product, quantity in other.items.values():
            self.add(product, quantity)
