"""Run the corpus for real and print the key of every function code object that executed.

Usage: python corpus_driver.py ROOT. The key comes from the code object (its
file and co_qualname) through coldmod_trace.keys — what the tracer does.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import runpy
import sys

from coldmod_trace.keys import is_function_code, key_for

root = os.path.realpath(sys.argv[1])
sys.path.insert(0, root)
seen = set()


def profile(frame, event, arg):
    if event == "call":
        seen.add(frame.f_code)


sys.setprofile(profile)

shop = importlib.import_module("shop")
models = importlib.import_module("shop.models")
control = importlib.import_module("shop.control")
util = importlib.import_module("shop.util")
latin1 = importlib.import_module("shop.latin1")
grüße = importlib.import_module("shop.sub.grüße")

shop.package_level()
cart = models.Cart.of(1, 2).add(3)
cart.total = cart.total + 1
del cart.total
models.Cart.empty()
repr(cart)
cart.ignored_method()
asyncio.run(cart.checkout())
models.Cart.Line("sku", 1)
models.Cart.Line.Price().amount()
models.parse(1)
models._Private().call()
control.version_specific()
control.loads("1")
control.after_try()
control.in_for_loop()
control.in_with_block()
control.outer(3)
control.make_global()()
list(control.counter(3))
asyncio.run(control.fetch(0))


async def drain():
    return [i async for i in control.agen(2)]


asyncio.run(drain())
control.recursive(3)
control.matcher({"kind": "a"})
util.used_fn()
util.ignored_fn()
latin1.latin1_function()
grüße.grüße("x")
grüße.Größe().maß()
runpy.run_path(os.path.join(root, "scripts", "tool.py"), run_name="__main__")
runpy.run_module("shop", run_name="__main__")

sys.setprofile(None)
for code in seen:
    path = os.path.realpath(code.co_filename)
    if is_function_code(code) and path.startswith(root + os.sep):
        print(key_for(os.path.relpath(path, root), code.co_qualname))
