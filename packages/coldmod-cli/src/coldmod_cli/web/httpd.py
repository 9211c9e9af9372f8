"""The web UI's HTTP(S) server: the page, a JSON API, Server-Sent Events, and connect commands.

Standard library ``http.server``, one thread per connection (SSE streams are
responses that never end), with the request framing made strict in one place,
:meth:`_Handler.parse_request`: a request is dispatched only once its whole
body is read; a body that cannot be framed exactly (``Transfer-Encoding``, a
bad or repeated ``Content-Length``, more than ``MAX_BODY``, a body on GET) is
refused, and every refusal closes the connection. Nothing a request carries
can therefore be read as a second request (the smuggling of issue 14).
State-changing routes also need our page's own ``Origin``/``Sec-Fetch-Site``
and headers no cross-site page may send without a preflight; in insecure mode
only the Host names the UI is bound to are served (DNS rebinding).

Why not a maintained HTTP library (h11, aiohttp, cheroot)? The flaw was the
framing, which is now enforced here and tested against raw sockets and a
hostile page; the UI serves a few developers per collector; and the server
(TLS, basic auth, SSE, thread per stream) is small enough to read whole. A
library would add a dependency for the same guarantees; h11 is the one to
take if this server ever has to do more (pipelining, chunked bodies).

Routes (all behind basic auth unless insecure):

- ``GET /`` the page; ``GET /static/<file>`` its script and style
- ``GET /api/apps?after=&limit=`` apps by name; ``GET /api/heatmap?app=NAME`` one heatmap (columns)
- ``GET /api/history?app=NAME&key=K`` (``key`` up to ``HISTORY_KEYS`` times) the keys' calls per UTC day
- ``GET /api/events`` live updates; ``GET /api/events/<connect key>?token=T`` plus that pairing
- ``POST /api/connect`` a new pairing made by the page: ``{"key", "token"}``
- ``POST /api/connect/<key>/claim`` the page's token for a pairing a CLI made (first page only)
- ``POST /api/connect/<key>/commands`` ``{"command": ..., "key": ...}`` with ``X-Coldmod-Token``
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import ipaddress
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from operator import attrgetter
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from coldmod_cli.server.refusals import Refusal, Refusals, web_peer
from coldmod_cli.server.store import Change, Store, StoreError, UnknownApp, utc_day
from coldmod_cli.web.broker import Broker, BrokerError
from coldmod_cli.web.feed import Feed, Hub
from coldmod_cli.web.snapshots import Snapshots

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
#: How long and how much a closing connection's unread input is discarded (see shutdown_request).
_LINGER_S = 0.5
_LINGER_BYTES = 1024 * 1024
#: Apps listed per /api/apps answer unless the page asks for fewer.
APPS_PAGE = 1000
#: Keys one /api/history request may ask for (the page asks for the function it shows).
HISTORY_KEYS = 100
#: Host names a loopback UI answers to besides IP literals (which DNS cannot rebind).
_LOCAL_NAMES = frozenset({"localhost", "localhost.", "localhost.localdomain"})
#: ``Sec-Fetch-Site`` values a state-changing request may carry: our page, or a person typing.
_OWN_SITES = frozenset({"same-origin", "none"})

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
    """The page's files, read once from the package."""
    files = resources.files("coldmod_cli.web") / "static"
    loaded = {name: (files / name).read_bytes() for name in _STATIC}
    loaded["index.html"] = (files / "index.html").read_bytes()
    return loaded


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Streams end when we close their feeds; never wait for a stuck client on close.
    block_on_close = False

    def __init__(self, address: tuple[str, int], web: WebServer) -> None:
        """Bind ``address`` for ``web`` (IPv6 when the host is an IPv6 literal)."""
        self.web = web
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's own thread: the TLS handshake happens here, not in the accept loop."""
        context = self.web.tls
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(IO_TIMEOUT_S)
        try:
            secure = context.wrap_socket(request, server_side=True)
        except ssl.SSLError as exc:
            # Plain HTTP, or a client that does not trust our certificate (its alert). A connection
            # closed before a word (a port probe, SSLEOFError) is no mismatch; nothing to answer either way.
            if not isinstance(exc, ssl.SSLEOFError):
                self.web.refusals.refused(Refusal.TLS, web_peer(client_address))
            return
        except OSError:
            return  # timed out or reset mid-handshake: nothing to answer
        try:
            super().finish_request(secure, client_address)
        finally:
            _close_gently(secure)  # the plain socket handed to shutdown_request is detached by now

    def shutdown_request(self, request: Any) -> None:
        """Close the connection gently (see _close_gently); a TLS one was closed in finish_request."""
        if self.web.tls is None:
            _close_gently(request)
        else:
            self.close_request(request)


def _close_gently(sock: Any) -> None:
    """Close so that a client whose request we refused unread still gets our answer (no RST).

    Closing a socket with unread input makes the kernel reset the connection, which can
    destroy the refusal just sent; so stop writing (plain TCP: the client sees the end and
    closes), discard what is still arriving for a moment (never parsing it), then close.
    TLS cannot half-close without a handshake: there we drain until the client pauses.
    """
    tls = isinstance(sock, ssl.SSLSocket)
    try:
        if not tls:
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_S
        drained = 0
        while drained < _LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(min(remaining, 0.05) if tls else remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except (OSError, ValueError):
        pass  # timed out, or the client is gone: either way, done
    finally:
        sock.close()


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
        broker: Broker | None = None,
        now_ms: Callable[[], int] | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        """Bind now (so the port is known); ``api_key=None`` means no authentication (insecure mode).

        ``now_ms`` is the collector's clock (tests inject one): the end of "the last N days" on the page.
        Wrong passwords and failed TLS handshakes are counted in ``refusals`` (the collector's).
        """
        self.store = store
        self.now_ms = now_ms or _wall_clock_ms
        self.tls = tls
        self.refusals = refusals or Refusals()
        self.broker = broker or Broker()
        self.hub = Hub()
        self.static = _load_static()
        self._expected = f"{USER}:{api_key}".encode() if api_key is not None else None
        # Insecure mode has no password to stop a rebound DNS name: answer only to our own names.
        self.host_names: frozenset[str] | None = None if api_key is not None else _own_names(host)
        self._stopping = threading.Event()
        self.snapshots = Snapshots(self._encode, lambda app: self.hub.on_change(Change(app, "report")))
        self._unsubscribe = store.subscribe(self._on_change)
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

    def _on_change(self, change: Any) -> None:
        """The store's subscriber (its writer thread: never blocks long): note it, tell the pages."""
        self.snapshots.changed(change.app, whole=change.kind != "report")
        self.hub.on_change(change)

    def _encode(self, app: str) -> bytes:
        """Read the app's heatmap and encode it as the page reads it: JSON columns, gzipped.

        Gzipped because 100,000 keys are 7 MB of JSON and about a tenth of that compressed: a
        developer far from the collector waits for bytes, not for the collector.
        """
        heatmap = self.store.fetch(app, now_ms=self.now_ms())
        text = json.dumps(_heatmap_columns(heatmap), separators=(",", ":")).encode()
        return gzip.compress(text, compresslevel=1, mtime=0)

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
        self.snapshots.close()
        self.hub.close()
        self.broker.close()
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

    def host_allowed(self, header: str | None) -> bool:
        """True when the Host header names this UI (always, with a password: rebinding cannot pass it)."""
        if self.host_names is None:
            return True
        host = _host_name(header or "")
        if not host:
            return False
        return host in self.host_names or _is_ip(host)

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called."""
        return self._stopping.is_set()


def _wall_clock_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _is_ip(host: str) -> bool:
    """True for an IP literal (a name DNS cannot point elsewhere)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_name(header: str) -> str:
    """The host part of a Host header, lower-case, without port or IPv6 brackets ("" if malformed)."""
    text = header.strip().lower()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        return inside if bracket and (not rest or (rest[:1] == ":" and rest[1:].isdigit())) else ""
    name, colon, port = text.partition(":")
    if colon and not port.isdigit():
        return ""
    return name


def _own_names(bound: str) -> frozenset[str]:
    """The names an insecure UI bound to ``bound`` answers to (besides IP literals)."""
    names = set(_LOCAL_NAMES)
    if bound and not _is_ip(bound):
        names.add(bound.lower())
    try:
        unspecified = not bound or ipaddress.ip_address(bound).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:  # every interface: the machine's own names too
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def _heatmap_columns(heatmap: Any) -> dict[str, Any]:
    """A heatmap as parallel columns (half the bytes of one object per key at 100,000 keys).

    Paths and the sets of versions that have a key are each one column of indices into a list
    of the distinct values (a few hundred paths, a few version sets, whatever the number of
    keys). Daily history is not here: the page asks /api/history for the function it shows.
    Columns are built with ``map`` over ``attrgetter`` (loops in C): at 100,000 keys this is
    what encoding a heatmap costs besides ``json.dumps``.
    """
    from coldmod_cli.heatmap import version_names

    entries = heatmap.entries

    def column(name: str) -> list[Any]:
        return list(map(attrgetter(name), entries))

    def indexed(name: str) -> tuple[list[int], list[Any]]:
        distinct = list(dict.fromkeys(map(attrgetter(name), entries)))
        index = {value: i for i, value in enumerate(distinct)}
        return list(map(index.__getitem__, map(attrgetter(name), entries))), distinct

    path, paths = indexed("path")
    version_set, version_sets = indexed("versions")
    return {
        "app": heatmap.app,
        "registered_ms": heatmap.registered_ms,
        "dropped_unknown": heatmap.dropped_unknown,
        "dropped_updates": heatmap.dropped_updates,
        "now_ms": heatmap.now_ms,
        "retire_after_ms": heatmap.retire_after_ms,
        "versions": [
            {"name": v.name, "label": v.label, "fingerprint": v.fingerprint, "keys": v.keys,
             "first_seen_ms": v.first_seen_ms, "last_seen_ms": v.last_seen_ms}
            for v in version_names(heatmap.versions)
        ],
        "count": len(entries),
        "key": column("key"),
        "calls": column("calls"),
        "estimated": list(map(int, column("estimated"))),
        "lower_bound": list(map(int, column("lower_bound"))),
        "first_seen_ms": column("first_seen_ms"),
        "last_seen_ms": column("last_seen_ms"),
        "tracked_since_ms": column("tracked_since_ms"),
        "calls_7d": column("calls_7d"),
        "calls_30d": column("calls_30d"),
        "calls_90d": column("calls_90d"),
        "version_set": version_set,
        "version_sets": [list(v) for v in version_sets],
        "path": path,
        "line": [e.lines[0] if e.lines else 0 for e in entries],
        "paths": paths,
    }


class _Refused(Exception):
    """A request answered with an error (the connection then closes)."""

    def __init__(self, status: int, message: str) -> None:
        """A refusal with its status and its one sentence."""
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IO_TIMEOUT_S
    server: _Server
    body = b""

    def version_string(self) -> str:
        """The Server header: no Python version for strangers."""
        return "coldmod"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: URLs carry connect keys, which must never reach a log."""

    # ------------------------------------------------------------- framing

    def parse_request(self) -> bool:
        """Parse the head, then frame the body exactly or refuse (and close); True when dispatchable."""
        self.body = b""
        if not super().parse_request():
            return False  # http.server answered (and closes) a malformed head
        try:
            self._read_body()
            if not self.server.web.host_allowed(self.headers.get("Host")):
                raise _Refused(421, "this UI answers only to the names it is bound to; use its own address")
        except _Refused as refused:
            self._error(refused.status, str(refused))
            return False
        return True

    def _read_body(self) -> None:
        """Read the whole body into ``self.body``, or raise _Refused for what cannot be framed exactly."""
        if self.headers.get_all("Transfer-Encoding"):
            raise _Refused(411, "send the body with a Content-Length (Transfer-Encoding is not accepted)")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return
        if len(lengths) != 1 or not lengths[0].strip().isdigit():
            raise _Refused(400, "one Content-Length with a decimal length, please")
        length = int(lengths[0])
        if length and self.command in ("GET", "HEAD"):
            raise _Refused(400, f"a {self.command} request has no body")
        if length > MAX_BODY:
            raise _Refused(413, f"the body may be at most {MAX_BODY // 1024} KiB")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _Refused(400, "the body is shorter than its Content-Length")
        self.body = body

    # ------------------------------------------------------------- answers

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        """Answer with ``body``; a refusal (4xx, 5xx) also ends the connection."""
        if status >= 400:  # a refusal ends the connection: nothing after it is read as a request
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        for name, value in {**_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        """Answer with ``data`` as JSON."""
        self._send(status, json.dumps(data, separators=(",", ":")).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        """Refuse with one sentence as JSON (and close the connection)."""
        self._json({"error": message}, status)

    def _authorized(self) -> bool:
        """True when the request may go on; otherwise a 401 was sent.

        A request without credentials is a browser's first ask (the 401 makes it prompt): only a
        wrong password counts as a refused one.
        """
        header = self.headers.get("Authorization")
        if self.server.web.authorized(header):
            return True
        if header is not None:
            self.server.web.refusals.refused(Refusal.CREDENTIALS, web_peer(self.client_address))
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b"Coldmod: user coldmod, password the collector's API key.\n",
            "text/plain; charset=utf-8",
            {"WWW-Authenticate": 'Basic realm="coldmod", charset="UTF-8"'},
        )
        return False

    def _from_our_page(self) -> None:
        """Raise _Refused unless a state-changing request comes from our own page (or no browser at all)."""
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in _OWN_SITES:
            raise _Refused(403, "commands come from the Coldmod page only (cross-site request refused)")
        origin = self.headers.get("Origin")
        own = f"{self.server.web.scheme}://{self.headers.get('Host', '')}".lower()
        if origin is not None and origin.lower() != own:
            raise _Refused(403, "commands come from the Coldmod page only (another Origin)")
        # A page on another site cannot set these without a CORS preflight, which we never grant.
        if self.headers.get("X-Coldmod") != "1" or not (self.headers.get("Content-Type") or "").startswith(
            "application/json"
        ):
            raise _Refused(403, "commands come from the Coldmod page only")

    # -------------------------------------------------------------- routes

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
        query = parse_qs(url.query)
        web = self.server.web
        if path in ("/", "/index.html"):
            self._send(200, web.static["index.html"], "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/"):] in _STATIC:
            name = path[len("/static/"):]
            self._send(200, web.static[name], _STATIC[name])
        elif path == "/favicon.ico":
            self._send(204, b"", "text/plain")
        elif path == "/api/apps":
            self._apps(query.get("after", [""])[0], query.get("limit", [""])[0])
        elif path == "/api/heatmap":
            self._heatmap(query.get("app", [""])[0])
        elif path == "/api/history":
            self._history(query.get("app", [""])[0], query.get("key", []))
        elif path == "/api/events":
            self._events(None, "")
        elif path.startswith("/api/events/"):
            self._events(unquote(path[len("/api/events/"):]), query.get("token", [""])[0])
        else:
            self._error(404, "no such page")

    def do_POST(self) -> None:
        """Pairings and connect commands."""
        if not self._authorized():
            return
        parts = urlsplit(self.path).path.split("/")
        broker = self.server.web.broker
        try:
            if parts[1:3] != ["api", "connect"] or len(parts) not in (3, 5):
                raise _Refused(404, "no such page")
            self._from_our_page()
            if len(parts) == 3:
                key, token = broker.issue_for_ui()
                self._json({"key": key, "token": token})
                return
            key, action = unquote(parts[3]), parts[4]
            if action == "claim":
                self._json({"token": broker.claim_ui(key)})
                return
            if action != "commands":
                raise _Refused(404, "no such page")
            try:
                body = json.loads(self.body)
                command, target = body["command"], body["key"]
            except (ValueError, KeyError, TypeError):
                raise _Refused(400, 'the body must be JSON like {"command": "ignore", "key": "pkg.mod.f"}') from None
            token = self.headers.get("X-Coldmod-Token") or ""
            self._json(broker.command(key, token, str(command), target))
        except _Refused as refused:
            self._error(refused.status, str(refused))
        except BrokerError as exc:
            self._error(409, str(exc))

    def _apps(self, after: str, limit_text: str) -> None:
        """One page of apps by name, with the total."""
        limit = int(limit_text) if limit_text.isdigit() and 0 < int(limit_text) <= APPS_PAGE else APPS_PAGE
        store = self.server.web.store
        try:
            apps = store.list_apps(after, limit + 1)
            total = store.count_apps()
        except StoreError as exc:
            self._error(503, str(exc))
            return
        more = len(apps) > limit
        apps = apps[:limit]
        self._json(
            {
                "apps": [
                    {"app": a.app, "keys": a.keys, "cold_keys": a.cold_keys, "calls": a.calls,
                     "updated_ms": a.updated_ms}
                    for a in apps
                ],
                "total": total,
                "next": apps[-1].app if more and apps else "",
            }
        )

    def _heatmap(self, app: str) -> None:
        """One app's heatmap (gzipped when the browser accepts it)."""
        if not app:
            self._error(400, "name the app: /api/heatmap?app=NAME")
            return
        try:
            encoded = self.server.web.snapshots.get(app)
        except UnknownApp:
            self._error(404, f"the collector has no heatmap for {app!r}")
            return
        except StoreError as exc:
            self._error(503, str(exc))
            return
        # The collector's clock now, for the page's "3 min ago" (the body may be an older copy).
        extra = {"X-Coldmod-Now-Ms": str(self.server.web.now_ms()), "Vary": "Accept-Encoding"}
        if "gzip" in (self.headers.get("Accept-Encoding") or "").lower():
            self._send(200, encoded, "application/json", extra | {"Content-Encoding": "gzip"})
        else:
            self._send(200, gzip.decompress(encoded), "application/json", extra)

    def _history(self, app: str, keys: list[str]) -> None:
        """Calls per UTC day of a few keys (the function the page shows): ``{"history": {key: {days, calls}}}``.

        Read from the store for the keys asked only, so a page on a 100,000-key app never carries every history.
        """
        if not app or not keys:
            self._error(400, "name the app and a key: /api/history?app=NAME&key=KEY")
            return
        if len(keys) > HISTORY_KEYS:
            self._error(400, f"ask for at most {HISTORY_KEYS} keys at a time")
            return
        try:
            found = self.server.web.store.history(app, keys)
        except UnknownApp:
            self._error(404, f"the collector has no heatmap for {app!r}")
            return
        except StoreError as exc:
            self._error(503, str(exc))
            return
        from coldmod_cli import seasonal

        now_ms = self.server.web.now_ms()
        today = seasonal.day_of(utc_day(now_ms))
        self._json(
            {
                "app": app,
                "now_ms": now_ms,
                # The seasonal rule on each key's calls (the page shows it for a function with no recent call).
                "history": {
                    key: {"days": list(days), "calls": list(calls),
                          "seasonal": seasonal.reason(map(seasonal.day_of, days), today)}
                    for key, (days, calls) in found.items()
                },
            }
        )

    def _events(self, connect_key: str | None, token: str) -> None:
        """A Server-Sent Events stream until the page goes away or the server stops."""
        web = self.server.web
        feed = Feed()
        remove = web.hub.add(feed)
        unlisten = None
        try:
            if connect_key is not None:
                try:
                    unlisten = web.broker.listen(connect_key, token, feed.push)
                except BrokerError as exc:
                    # The page learns why on its stream (an HTTP error would only make it retry).
                    feed.push("pairing", {"error": str(exc)})
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
