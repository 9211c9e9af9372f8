"""The products the shop sells, and how prices are shown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    """One product: its id, name and price in cents."""

    id: str
    name: str
    price: int

    @property
    def label(self) -> str:
        """The product as a list entry."""
        return f"{self.name} ({format_price(self.price)})"


PRODUCTS = {
    "tea": Product("tea", "Green tea", 450),
    "mug": Product("mug", "Mug", 1200),
    "pot": Product("pot", "Teapot", 3900),
}


def list_products() -> list[Product]:
    """Every product, cheapest first."""
    return sorted(PRODUCTS.values(), key=lambda p: p.price)


def find_product(product_id: str) -> Product | None:
    """The product with this id, if there is one."""
    return PRODUCTS.get(product_id)


def format_price(cents: int) -> str:
    """Cents as a price, like 4.50 EUR."""
    return f"{cents // 100}.{cents % 100:02d} EUR"


def import_legacy_csv(text: str) -> list[Product]:
    """Products from the CSV export of the shop's previous system (used once, in 2019)."""
    products = []
    for line in text.strip().splitlines()[1:]:
        product_id, name, price = line.split(";")
        products.append(Product(product_id, name, int(float(price) * 100)))
    return products


def format_price_in_dollars(cents: int) -> str:
    """Cents as a price in US dollars (the US store closed years ago)."""
    return f"${cents * 108 // 10000}.{cents * 108 // 100 % 100:02d}"
