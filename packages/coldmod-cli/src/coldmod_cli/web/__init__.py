"""The live web UI served by the collector, and the relay behind ``coldmod connect``.

``serve`` wires it in two steps: ``relay = register(grpc_server)`` before the
gRPC server starts (the Connect service), then ``start(info, relay)`` once it
runs (the HTTP(S) server on ``info.web_host``/``info.web_port``). The page is
hand-written HTML, CSS and JavaScript in ``static/``: no build step, no CDN.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from coldmod_cli.web.httpd import USER, WebServer, tls_context
from coldmod_cli.web.relay import ConnectService, KeyBook, MemoryKeyBook, Relay, RelayError, register, valid_key
from coldmod_trace.config import ConfigError

if TYPE_CHECKING:
    from coldmod_cli.server.runner import ServerInfo

__all__ = [
    "USER",
    "ConnectService",
    "KeyBook",
    "MemoryKeyBook",
    "Relay",
    "RelayError",
    "WebServer",
    "register",
    "start",
    "valid_key",
]


def start(info: ServerInfo, relay: Relay | None = None) -> WebServer:
    """Serve the web UI for a running collector (TLS and basic auth unless insecure); returns its handle."""
    settings = info.settings
    connect_keys = getattr(info.store, "connect_keys", None)
    if relay is not None and callable(connect_keys):
        # A shared store (Redis) shares the issued keys and the sessions: any collector serves any pairing.
        relay.keys = connect_keys(relay)
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
            relay=relay,
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
