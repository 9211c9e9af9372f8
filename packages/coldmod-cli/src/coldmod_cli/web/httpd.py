"""The web UI's HTTP(S) server: the page, a JSON API, Server-Sent Events, and connect commands.

Standard library only: a thread per connection is plenty for the few
developers who look at one collector, and a Server-Sent Events stream is a
response that never ends. Routes (all behind basic auth unless insecure):

- ``GET /`` the page; ``GET /static/<file>`` its script and style
- ``GET /api/apps`` every app; ``GET /api/heatmap?app=NAME`` one heatmap
- ``GET /api/events`` live updates; ``GET /api/events/<connect key>`` plus that connect session
- ``POST /api/connect/<connect key>/commands`` ``{"command": ..., "key": ...}``, answered with the CLI's result
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from coldmod_cli.server.store import Store, StoreError, UnknownApp
from coldmod_cli.web.feed import Feed, Hub
from coldmod_cli.web.relay import Relay, RelayError

__all__ = ["USER", "WebServer", "tls_context"]

#: The basic-auth user name; the password is the API key.
USER = "coldmod"
#: Seconds between SSE comments that keep proxies from closing an idle stream.
HEARTBEAT_S = 15.0
#: Shortest gap between two frames of one stream: a burst of commits becomes one refresh.
MIN_GAP_S = 0.2
#: Seconds a client gets for its TLS handshake and for each request line and header.
IO_TIMEOUT_S = 30.0
#: Largest request body we read (a command is a few hundred bytes).
MAX_BODY = 64 * 1024

_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    # Nothing but our own files, and no inline script: a key that slipped into
    # markup still could not run.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def tls_context(certificate_chain: bytes, private_key: bytes) -> ssl.SSLContext:
    """A server TLS context from PEM bytes (the ones the gRPC server uses)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads certificates only from files: a private directory, deleted at once.
    with tempfile.TemporaryDirectory(prefix="coldmod-tls-") as directory:
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        for path, data in ((cert_path, certificate_chain), (key_path, private_key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path, password="")
    return context


def _load_static() -> dict[str, bytes]:
    files = resources.files("coldmod_cli.web") / "static"
    loaded = {name: (files / name).read_bytes() for name in _STATIC}
    loaded["index.html"] = (files / "index.html").read_bytes()
    return loaded


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Streams end when we close their feeds; never wait for a stuck client on close.
    block_on_close = False

    def __init__(self, address: tuple[str, int], web: WebServer) -> None:
        self.web = web
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's own thread: the TLS handshake happens here, not in the accept loop."""
        context = self.web.tls
        if context is not None:
            request.settimeout(IO_TIMEOUT_S)
            try:
                request = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return  # a failed handshake (plain HTTP, a scanner): nothing to answer
        super().finish_request(request, client_address)


class WebServer:
    """The web UI on one address; ``port`` is the bound port (useful when asked for 0)."""

    def __init__(
        self,
        host: str,
        port: int,
        store: Store,
        *,
        api_key: str | None,
        tls: ssl.SSLContext | None,
        relay: Relay | None = None,
    ) -> None:
        """Bind now (so the port is known); ``api_key=None`` means no authentication (insecure mode)."""
        self.store = store
        self.tls = tls
        self.relay = relay or Relay()
        self.hub = Hub()
        self.static = _load_static()
        self._expected = f"{USER}:{api_key}".encode() if api_key is not None else None
        self._stopping = threading.Event()
        self._unsubscribe = store.subscribe(self.hub.on_change)
        try:
            self._httpd = _Server((host, port), self)
        except OSError:
            self._unsubscribe()
            raise
        self.port: int = self._httpd.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="coldmod-web"
        )

    def __repr__(self) -> str:
        """Never shows the API key."""
        return f"WebServer(port={self.port}, scheme={self.scheme!r})"

    def start(self) -> WebServer:
        """Serve in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end every live stream and connect session, release the port."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._unsubscribe()
        self.hub.close()
        self.relay.close()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        """True when no key is needed, or ``header`` is basic auth for ``coldmod:<api key>``."""
        if self._expected is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            presented = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(presented, self._expected)

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called."""
        return self._stopping.is_set()


def _entry(e: Any) -> dict[str, Any]:
    return {
        "key": e.key,
        "calls": e.calls,
        "estimated": e.estimated,
        "first_seen_ms": e.first_seen_ms,
        "last_seen_ms": e.last_seen_ms,
        "tracked_since_ms": e.tracked_since_ms,
        "path": e.path,
        "line": e.lines[0] if e.lines else 0,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        """The Server header: no Python version for strangers."""
        return "coldmod"
    timeout = IO_TIMEOUT_S
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: URLs carry connect keys, which must never reach a log."""

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in {**_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data, separators=(",", ":")).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _authorized(self) -> bool:
        if self.server.web.authorized(self.headers.get("Authorization")):
            return True
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b"Coldmod: user coldmod, password the collector's API key.\n",
            "text/plain; charset=utf-8",
            {"WWW-Authenticate": 'Basic realm="coldmod", charset="UTF-8"'},
        )
        return False

    def do_HEAD(self) -> None:
        """Like GET, without a body (a stream has no head)."""
        if urlsplit(self.path).path.startswith("/api/events"):
            if self._authorized():
                self._error(405, "open the event stream with GET")
            return
        self.do_GET()

    def do_GET(self) -> None:
        """The page, its files, the JSON API and the live streams."""
        if not self._authorized():
            return
        url = urlsplit(self.path)
        path = url.path
        web = self.server.web
        if path in ("/", "/index.html"):
            self._send(200, web.static["index.html"], "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/"):] in _STATIC:
            name = path[len("/static/"):]
            self._send(200, web.static[name], _STATIC[name])
        elif path == "/favicon.ico":
            self._send(204, b"", "text/plain")
        elif path == "/api/apps":
            self._apps()
        elif path == "/api/heatmap":
            self._heatmap(parse_qs(url.query).get("app", [""])[0])
        elif path == "/api/events":
            self._events(None)
        elif path.startswith("/api/events/"):
            self._events(unquote(path[len("/api/events/"):]))
        else:
            self._error(404, "no such page")

    def do_POST(self) -> None:
        """Connect commands."""
        if not self._authorized():
            return
        parts = urlsplit(self.path).path.split("/")
        if len(parts) != 5 or parts[1:3] != ["api", "connect"] or parts[4] != "commands":
            self._error(404, "no such page")
            return
        # A page on another site cannot set this header without a CORS preflight,
        # which we never grant: commands only come from our own page.
        if self.headers.get("X-Coldmod") != "1" or not (self.headers.get("Content-Type") or "").startswith(
            "application/json"
        ):
            self._error(403, "commands come from the Coldmod page only")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._error(400, "the request needs a JSON body of at most 64 KiB")
            return
        try:
            body = json.loads(self.rfile.read(length))
            command, target = body["command"], body["key"]
        except (ValueError, KeyError, TypeError):
            self._error(400, 'the body must be JSON like {"command": "ignore", "key": "pkg.mod.f"}')
            return
        try:
            result = self.server.web.relay.command(unquote(parts[3]), str(command), target)
        except RelayError as exc:
            self._error(409, str(exc))
            return
        self._json(result)

    def _apps(self) -> None:
        try:
            apps = self.server.web.store.list_apps()
        except StoreError as exc:
            self._error(503, str(exc))
            return
        self._json(
            [
                {"app": a.app, "keys": a.keys, "cold_keys": a.cold_keys, "calls": a.calls, "updated_ms": a.updated_ms}
                for a in apps
            ]
        )

    def _heatmap(self, app: str) -> None:
        if not app:
            self._error(400, "name the app: /api/heatmap?app=NAME")
            return
        try:
            heatmap = self.server.web.store.fetch(app)
        except UnknownApp:
            self._error(404, f"the collector has no heatmap for {app!r}")
            return
        except StoreError as exc:
            self._error(503, str(exc))
            return
        self._json(
            {
                "app": heatmap.app,
                "registered_ms": heatmap.registered_ms,
                "dropped_unknown": heatmap.dropped_unknown,
                "dropped_updates": heatmap.dropped_updates,
                "now_ms": time.time_ns() // 1_000_000,
                "entries": [_entry(e) for e in heatmap.entries],
            }
        )

    def _events(self, connect_key: str | None) -> None:
        """A Server-Sent Events stream until the page goes away or the server stops."""
        web = self.server.web
        feed = Feed()
        remove = web.hub.add(feed)
        unlisten = None
        try:
            if connect_key is not None:
                try:
                    unlisten = web.relay.listen(connect_key, feed.push)
                except RelayError as exc:
                    self._error(400, str(exc))
                    return
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for name, value in _HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            # The page reconnects by itself after this many milliseconds when the stream drops.
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            while not web.stopping:
                frames = feed.take(HEARTBEAT_S)
                if feed.closed:
                    break
                chunk = "".join(f"event: {name}\ndata: {data}\n\n" for name, data in frames) or ": keep-alive\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
                time.sleep(MIN_GAP_S)
        except (OSError, ssl.SSLError):
            pass  # the page went away
        finally:
            remove()
            if unlisten is not None:
                unlisten()
