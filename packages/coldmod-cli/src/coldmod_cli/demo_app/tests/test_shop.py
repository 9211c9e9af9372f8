"""The shop's own tests: what the pages do (run with `python -m unittest`)."""

import unittest

from shop import views
from shop.cart import Cart
from shop.catalog import find_product, format_price, list_products


class CatalogTest(unittest.TestCase):
    def test_products_are_listed_cheapest_first(self) -> None:
        prices = [p.price for p in list_products()]
        assert prices == sorted(prices)

    def test_price_format(self) -> None:
        assert format_price(450) == "4.50 EUR"


class CartTest(unittest.TestCase):
    def test_total_counts_quantities(self) -> None:
        cart = Cart()
        cart.add(find_product("tea"), 2)
        cart.add(find_product("mug"))
        assert cart.total() == 2 * 450 + 1200


class ViewsTest(unittest.TestCase):
    def test_product_page(self) -> None:
        assert views.product({"id": "pot"}) == (200, "Teapot (39.00 EUR)")

    def test_unknown_product(self) -> None:
        assert views.product({"id": "nope"})[0] == 404

    def test_index_lists_every_product(self) -> None:
        assert views.index({})[1].count("\n") == 2


if __name__ == "__main__":
    unittest.main()
