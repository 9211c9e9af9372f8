"""demo-shop: a tiny HTTP shop for `coldmod demo`."""
