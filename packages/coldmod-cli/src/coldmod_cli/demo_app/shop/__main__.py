"""``python -m shop``: serve the shop on 127.0.0.1 (a free port unless PORT is set) until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from shop.views import ROUTES


class Handler(BaseHTTPRequestHandler):
    """Dispatches a GET to the view its path names."""

    def do_GET(self) -> None:
        """Answer one request."""
        url = urlsplit(self.path)
        view = ROUTES.get(url.path)
        status, text = view(dict(parse_qsl(url.query))) if view else (404, "not found")
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo prints its own story."""


def stop(signum: int, frame: object) -> None:
    """SIGTERM ends the process normally, so the tracer flushes its counts at exit."""
    raise KeyboardInterrupt


def main() -> None:
    """Serve until SIGTERM or Ctrl-C."""
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
    signal.signal(signal.SIGTERM, stop)
    print(f"shop: listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("shop: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
