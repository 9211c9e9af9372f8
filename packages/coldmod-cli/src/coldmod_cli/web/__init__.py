"""The live web UI served by the collector, and the broker behind ``coldmod connect``.

``serve`` wires it in two steps: ``broker = register(grpc_server)`` before the
gRPC server starts (the Connect service), then ``start(info, broker)`` once it
runs (the HTTP(S) server on ``info.web_host``/``info.web_port``). The page is
hand-written HTML, CSS and JavaScript in ``static/``: no build step, no CDN.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from coldmod_cli.web.broker import Broker, BrokerError, ConnectService, KeyBook, MemoryKeyBook, register, valid_key
from coldmod_cli.web.httpd import USER, WebServer, tls_context
from coldmod_trace.config import ConfigError

if TYPE_CHECKING:
    from coldmod_cli.server.runner import ServerInfo

__all__ = [
    "USER",
    "Broker",
    "BrokerError",
    "ConnectService",
    "KeyBook",
    "MemoryKeyBook",
    "WebServer",
    "register",
    "start",
    "valid_key",
]


def start(info: ServerInfo, broker: Broker | None = None) -> WebServer:
    """Serve the web UI for a running collector (TLS and basic auth unless insecure); returns its handle."""
    settings = info.settings
    connect_keys = getattr(info.store, "connect_keys", None)
    if broker is not None and callable(connect_keys):
        # A shared store (Redis) shares the issued keys and the sessions: any collector serves any pairing.
        broker.keys = connect_keys(broker)
    tls = None
    if not info.insecure:
        tls = tls_context(settings.certificate_chain or b"", settings.private_key or b"")
    try:
        server = WebServer(
            settings.web_host,
            settings.web_port,
            info.store,
            api_key=None if info.insecure else settings.api_key or "",
            tls=tls,
            broker=broker,
            now_ms=info.now_ms,
            refusals=info.refusals,
        )
    except OSError as exc:
        where = f"[{settings.web_host}]:{settings.web_port}" if ":" in settings.web_host else (
            f"{settings.web_host}:{settings.web_port}"
        )
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"cannot serve the web UI on {where}: {reason}") from None
    return server.start()
