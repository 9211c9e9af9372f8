"""The shop's pages: each handler returns (status, text)."""

from __future__ import annotations

from shop.cart import Cart
from shop.catalog import find_product, list_products

CART = Cart()


def index(query: dict[str, str]) -> tuple[int, str]:
    """The product list."""
    return 200, "\n".join(product.label for product in list_products())


def product(query: dict[str, str]) -> tuple[int, str]:
    """One product's page."""
    found = find_product(query.get("id", ""))
    if found is None:
        return 404, "no such product"
    return 200, found.label


def add_to_cart(query: dict[str, str]) -> tuple[int, str]:
    """Put a product in the cart."""
    found = find_product(query.get("id", ""))
    if found is None:
        return 404, "no such product"
    CART.add(found, int(query.get("quantity", "1")))
    return 200, CART.summary()


def coupon(query: dict[str, str]) -> tuple[int, str]:
    """Apply a coupon (the page exists; no link leads to it)."""
    return 200, str(CART.apply_coupon(query.get("code", "")))


ROUTES = {
    "/": index,
    "/product": product,
    "/cart/add": add_to_cart,
    "/coupon": coupon,
}
