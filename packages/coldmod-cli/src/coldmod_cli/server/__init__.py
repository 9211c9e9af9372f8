"""The collector behind ``coldmod serve``: gRPC services over a durable store.

``serve(...)`` runs it; ``open_store(url)`` opens a store on its own (the web
UI and tests read through the same :class:`Store` interface; its module
docstring explains the change notifications that drive live updates).
"""

from coldmod_cli.server.runner import ServerInfo, WebHandle, serve
from coldmod_cli.server.store import Change, SchemaError, Store, StoreError, open_store

__all__ = [
    "Change",
    "SchemaError",
    "ServerInfo",
    "Store",
    "StoreError",
    "WebHandle",
    "open_store",
    "serve",
]
