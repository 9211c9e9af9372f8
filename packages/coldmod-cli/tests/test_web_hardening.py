"""The web UI against hostile requests: smuggled requests, other origins, rebound names (issue 14).

A real CLI is paired in every test that could be fooled into acting, and the
proof that nothing reached it is the checkout's rootmarker, unchanged. The
smuggled request is the worst case: it carries the pairing's key *and* the
page's token, so only the HTTP framing stands between it and the CLI.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from web_fixtures import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Cli,
    Session,
    Stack,
    checkout_sources,
    running_stack,
    wait_for,
    write_checkout,
)

pytestmark = pytest.mark.timeout(120)

#: The command every smuggling attempt tries to slip through: it would edit the rootmarker.
TARGET = "shop.views.legacy"


@pytest.fixture(scope="module")
def hostile_browser() -> Iterator[Browser]:
    """Chromium that resolves attacker.test and rebind.test to 127.0.0.1 (two "sites" on loopback)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP attacker.test 127.0.0.1, MAP rebind.test 127.0.0.1"],
        )
        yield chromium
        chromium.close()


class Paired:
    """An insecure collector (as in the demo) with a CLI paired to a page's pairing."""

    def __init__(self, stack: Stack, checkout: Path) -> None:
        self.stack = stack
        self.marker = checkout / "coldmod.rootmarker"
        self.before = self.marker.read_text()
        self.key, self.token = stack.pairing()
        self.session = Session(stack, self.key, self.token)
        self.cli = Cli(stack, checkout, self.key)
        wait_for(lambda: self.session.cli()["connected"], what="the CLI to attach")
        wait_for(lambda: any(name == "sources" and data for name, data in self.session.events), what="sources")

    def inner(self, host: str) -> bytes:
        """A complete, valid command request: what a smuggler wants the server to read as the next one."""
        body = json.dumps({"command": "ignore", "key": TARGET}).encode()
        return (
            f"POST /api/connect/{self.key}/commands HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nX-Coldmod: 1\r\nX-Coldmod-Token: {self.token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def untouched(self) -> bool:
        """True while no command reached the CLI (the rootmarker is as it was)."""
        return self.marker.read_text() == self.before

    def close(self) -> None:
        """Stop the CLI and the listener."""
        self.cli.close()
        self.session.close()


@pytest.fixture
def paired(tmp_path: Path) -> Iterator[Paired]:
    """A collector, the web tests' checkout registered, and a CLI paired with a page."""
    checkout = write_checkout(tmp_path / "checkout")
    with running_stack(tmp_path) as stack:
        stack.register("webshop", checkout_sources(checkout))
        pairing = Paired(stack, checkout)
        try:
            yield pairing
        finally:
            pairing.close()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[list[int], bool]:
    """Send raw bytes on one connection: (statuses of every response read, whether the server closed it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        closed = False
        try:
            while chunk := sock.recv(65536):
                received += chunk
            closed = True
        except TimeoutError:
            pass  # the server kept the connection open
    return _statuses(received), closed


def _statuses(data: bytes) -> list[int]:
    """The status of each response in ``data``, framed by Content-Length (as a client would read them)."""
    statuses = []
    while data:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            break
        lines = data[:head_end].decode("latin-1").split("\r\n")
        statuses.append(int(lines[0].split()[1]))
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = 0 if statuses[-1] in (204, 304) else int(fields.get("content-length", "0"))
        data = data[head_end + 4 + length:]
    return statuses


def head(method: str, path: str, host: str, *headers: str, length: int | None = None) -> bytes:
    """A request head with ``headers`` (and a Content-Length unless None)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


#: Requests a smuggler could wrap around a command (the body is the inner request): name → head builder.
#: Each is refused, and the refusal ends the connection before the body can be read as a request.
SMUGGLERS = {
    "403: a simple cross-site POST (text/plain, no X-Coldmod)": lambda key, n: head(
        "POST", f"/api/connect/{key}/commands", "{host}", "Content-Type: text/plain", length=n),
    "403: X-Coldmod with another Origin": lambda key, n: head(
        "POST", f"/api/connect/{key}/commands", "{host}", "Content-Type: application/json", "X-Coldmod: 1",
        "Origin: http://attacker.test:1", length=n),
    "403: Sec-Fetch-Site cross-site": lambda key, n: head(
        "POST", f"/api/connect/{key}/commands", "{host}", "Content-Type: application/json", "X-Coldmod: 1",
        "Sec-Fetch-Site: cross-site", length=n),
    "400: GET with a body": lambda key, n: head("GET", "/api/apps", "{host}", length=n),
    "400: HEAD with a body": lambda key, n: head("HEAD", "/", "{host}", length=n),
    "404: POST to no route": lambda key, n: head("POST", "/api/nothing", "{host}", length=n),
    "405/501: an unknown method": lambda key, n: head("PUT", "/api/apps", "{host}", length=n),
    "400: two Content-Lengths": lambda key, n: head(
        "POST", "/api/connect", "{host}", f"Content-Length: {n}", length=0),
    "411: Transfer-Encoding chunked": lambda key, n: head(
        "POST", "/api/connect", "{host}", "Transfer-Encoding: chunked"),
    "421: a Host the UI is not bound to": lambda key, n: head(
        "POST", f"/api/connect/{key}/commands", "attacker.test", "Content-Type: text/plain", length=n),
}


@pytest.mark.parametrize("name", list(SMUGGLERS))
def test_a_refused_request_closes_its_connection_so_its_body_is_never_a_request(paired: Paired, name: str) -> None:
    port = paired.stack.web.port
    host = f"127.0.0.1:{port}"
    inner = paired.inner(host)
    outer = SMUGGLERS[name](paired.key, len(inner)).replace(b"{host}", host.encode())
    if b"chunked" in outer:
        inner = f"{len(inner):x}\r\n".encode() + inner + b"\r\n0\r\n\r\n"
    statuses, closed = exchange(port, outer + inner)
    assert len(statuses) == 1, statuses  # one answer: the inner request was never read as a request
    assert statuses[0] >= 400, statuses
    assert closed, "the server kept the connection open after a refusal"
    assert paired.untouched()
    # The pairing itself still works for the page that holds it.
    assert paired.stack.broker.command(paired.key, paired.token, "open", "not.a.key")["ok"] is False


def test_an_accepted_request_reads_its_whole_body_before_the_next(paired: Paired) -> None:
    """Keep-alive stays correct: two requests on one connection, each framed exactly."""
    port = paired.stack.web.port
    host = f"127.0.0.1:{port}"
    body = json.dumps({"command": "open", "key": "not.a.key"}).encode()
    first = head(
        "POST", f"/api/connect/{paired.key}/commands", host, "Content-Type: application/json", "X-Coldmod: 1",
        f"X-Coldmod-Token: {paired.token}", length=len(body),
    ) + body
    statuses, _ = exchange(port, first + head("GET", "/api/apps", host, "Connection: close"))
    assert statuses == [200, 200]
    assert paired.untouched()


def test_origin_and_fetch_metadata_guard_the_state_changing_routes(paired: Paired) -> None:
    port = paired.stack.web.port
    host = f"127.0.0.1:{port}"
    page = ("Content-Type: application/json", "X-Coldmod: 1")
    cases = [  # (extra headers, expected status): a new pairing is the state change asked for
        ((), 200),  # no browser at all (curl, the tests): no CSRF possible
        ((f"Origin: http://{host}", "Sec-Fetch-Site: same-origin"), 200),
        ((f"Origin: http://localhost:{port}",), 403),  # another origin, even on this machine
        (("Origin: null",), 403),
        (("Sec-Fetch-Site: same-site",), 403),
        (("Sec-Fetch-Site: cross-site",), 403),
        ((f"Origin: https://{host}",), 403),  # wrong scheme
    ]
    for extra, expected in cases:
        statuses, _ = exchange(port, head("POST", "/api/connect", host, *page, *extra, "Connection: close", length=0))
        assert statuses == [expected], (extra, statuses)


def test_insecure_mode_answers_only_to_its_own_host_names(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        port = stack.web.port
        for host, expected in [
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            (f"LOCALHOST:{port}", 200),
            (f"[::1]:{port}", 200),
            (f"10.1.2.3:{port}", 200),  # an IP literal: DNS cannot rebind it
            (f"rebind.test:{port}", 421),
            (f"localhost.attacker.test:{port}", 421),
            (f"127.0.0.1.nip.io:{port}", 421),
            ("", 421),
            (f"localhost:{port}:1", 421),
        ]:
            statuses, _ = exchange(port, head("GET", "/api/apps", host, "Connection: close"))
            assert statuses == [expected], (host, statuses)
        statuses, _ = exchange(port, b"GET /api/apps HTTP/1.0\r\n\r\n")  # no Host at all
        assert statuses == [421]


class _AttackPage(BaseHTTPRequestHandler):
    """Serves the attacker's page (its script is in the class attribute ``page``)."""

    page = b""

    def do_GET(self) -> None:
        """The page, whatever the path."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_a_page_on_another_origin_cannot_smuggle_a_command_to_the_cli(
    paired: Paired, hostile_browser: Browser
) -> None:
    port = paired.stack.web.port
    victim = f"http://127.0.0.1:{port}"
    inner = paired.inner(f"127.0.0.1:{port}").decode()
    script = f"""
      <script>
      const inner = {json.dumps(inner)};
      const url = {json.dumps(victim + "/api/connect/" + paired.key + "/commands")};
      async function attack() {{
        const tries = [];
        for (let i = 0; i < 3; i += 1) {{
          // A simple no-cors POST whose body is a whole request; twice, so a kept-alive connection would reuse it.
          tries.push(fetch(url, {{ method: "POST", mode: "no-cors", body: inner + inner,
                                  headers: {{ "Content-Type": "text/plain" }} }}).catch(() => null));
          tries.push(fetch({json.dumps(victim + "/api/apps")}, {{ mode: "no-cors" }}).catch(() => null));
        }}
        // The real request shape, which needs a preflight we never grant.
        tries.push(fetch(url, {{ method: "POST", headers: {{ "Content-Type": "application/json", "X-Coldmod": "1",
          "X-Coldmod-Token": {json.dumps(paired.token)} }},
          body: JSON.stringify({{command: "ignore", key: "{TARGET}"}}) }})
          .then(() => "sent", () => "blocked"));
        const results = await Promise.all(tries);
        document.title = "done " + results[results.length - 1];
      }}
      attack();
      </script>
      <form id="f" method="POST" enctype="text/plain" action="{victim}/api/connect/{paired.key}/commands">
        <input name='{{"command":"ignore","key":"{TARGET}","x":"' value='"}}'>
      </form>
    """
    _AttackPage.page = script.encode()
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _AttackPage)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        context = hostile_browser.new_context()
        page = context.new_page()
        page.goto(f"http://attacker.test:{attacker.server_address[1]}/")
        page.wait_for_function("document.title.startsWith('done')", timeout=20000)
        assert page.title() == "done blocked"  # the preflighted request never left the browser
        with page.expect_navigation():
            page.evaluate("document.getElementById('f').submit()")
        assert "commands come from the Coldmod page only" in page.content()
        context.close()
        assert paired.untouched()
        assert paired.session.cli()["connected"]
    finally:
        attacker.shutdown()
        attacker.server_close()


def test_a_rebound_name_gets_nothing_from_an_insecure_ui(paired: Paired, hostile_browser: Browser) -> None:
    context = hostile_browser.new_context()
    page = context.new_page()
    response = page.goto(f"http://rebind.test:{paired.stack.web.port}/")
    assert response is not None
    assert response.status == 421
    assert "Coldmod" not in page.title()
    api = page.goto(f"http://rebind.test:{paired.stack.web.port}/api/heatmap?app=webshop")
    assert api is not None
    assert api.status == 421
    assert "shop.cart" not in page.content()
    context.close()
    assert paired.untouched()


def test_smuggling_through_a_401_over_tls_reaches_nothing(tmp_path: Path) -> None:
    """Production configuration: the outer request has no password, the inner one has everything."""
    import base64
    import ssl

    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.cert_pem.bytes())
    checkout = write_checkout(tmp_path / "checkout")
    with running_stack(tmp_path, api_key="production-key", tls=ca) as stack:
        marker = checkout / "coldmod.rootmarker"
        before = marker.read_text()
        key, token = stack.pairing()
        session = Session(stack, key, token)
        cli = Cli(stack, checkout, key, env={"COLDMOD_TLS_CA": str(ca_path)})
        try:
            wait_for(lambda: session.cli()["connected"], what="the CLI to attach over TLS")
            host = f"127.0.0.1:{stack.web.port}"
            auth = "Basic " + base64.b64encode(b"coldmod:production-key").decode()
            body = json.dumps({"command": "ignore", "key": TARGET}).encode()
            inner = head(
                "POST", f"/api/connect/{key}/commands", host, f"Authorization: {auth}",
                "Content-Type: application/json", "X-Coldmod: 1", f"X-Coldmod-Token: {token}", length=len(body),
            ) + body
            outer = head("POST", f"/api/connect/{key}/commands", host, "Content-Type: text/plain", length=len(inner))
            context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
            with socket.create_connection(("127.0.0.1", stack.web.port), timeout=5) as raw, context.wrap_socket(
                raw, server_hostname="127.0.0.1"
            ) as sock:
                sock.sendall(outer + inner)
                received = b""
                closed = False
                try:
                    while chunk := sock.recv(65536):
                        received += chunk
                    closed = True
                except TimeoutError:
                    pass
            assert _statuses(received) == [401]
            assert closed
            assert marker.read_text() == before
        finally:
            cli.close()
            session.close()
