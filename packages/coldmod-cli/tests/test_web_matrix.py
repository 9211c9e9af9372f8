"""What held up, kept as a matrix a newcomer can scan: input × component × expected outcome.

The web side of issue 14's "What held up" (the gRPC side is in the server's tests):
auth on every web route, path traversal on the static files, connect keys, hostile
names rendered as text in Chromium, and ``$EDITOR`` started without a shell. Each
table below is one component; each row one input and what must happen. The
collector runs in the production configuration: TLS and an API key.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from playwright.sync_api import Browser, expect
from web_fixtures import browser, running_stack  # noqa: F401 - `browser` is a fixture

from coldmod_cli.connect import editor_command
from coldmod_cli.server.store import Source
from coldmod_cli.web import BrokerError
from coldmod_cli.web.broker import Claim, MemoryKeyBook
from coldmod_cli.web.httpd import _host_name, _is_ip, _own_names

pytestmark = pytest.mark.timeout(120)

API_KEY = "matrix-api-key-0123456789"

def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


#: Component: basic auth on the web UI. Input: the Authorization header.
#: Expected: the refusal's status, or None for the right credentials (the route's own answer).
CREDENTIALS: dict[str, tuple[str | None, int | None]] = {
    "none": (None, 401),
    "empty basic": ("Basic ", 401),
    "wrong password": (_basic("coldmod", "wrong"), 401),
    "wrong user": (_basic("admin", API_KEY), 401),
    "prefix of the key": (_basic("coldmod", API_KEY[:-1]), 401),
    "longer than the key": (_basic("coldmod", API_KEY + "x"), 401),
    "100 KB key": (_basic("coldmod", "k" * 100_000), 431),  # refused before it is even read as a header
    "bearer scheme": (f"Bearer {API_KEY}", 401),
    "not base64": ("Basic %%%%", 401),
    "right": (_basic("coldmod", API_KEY), None),
    "right, lower-case scheme": ("basic " + _basic("coldmod", API_KEY)[6:], None),
}

#: Component: the web routes. Input: method and path. Expected: the status with the right credentials.
ROUTES: dict[str, tuple[str, str, int]] = {
    "the page": ("GET", "/", 200),
    "the page, HEAD": ("HEAD", "/", 200),
    "its script": ("GET", "/static/app.js", 200),
    "its style": ("GET", "/static/style.css", 200),
    "apps": ("GET", "/api/apps", 200),
    "a heatmap": ("GET", "/api/heatmap?app=nope", 404),
    "a new pairing": ("POST", "/api/connect", 200),
    "claim a pairing": ("POST", "/api/connect/AAAAAAAAAAAAAAAAAAAAAA/claim", 409),
    "a command": ("POST", "/api/connect/AAAAAAAAAAAAAAAAAAAAAA/commands", 400),
    "no such page": ("GET", "/admin", 404),
}

#: Component: the Host check of an insecure UI. Input: (address it is bound to, Host header).
#: Expected: served or refused (421). Names DNS could point elsewhere are refused; IP literals are not.
HOSTS: dict[str, tuple[str, str, bool]] = {
    "loopback, by IP": ("127.0.0.1", "127.0.0.1:7778", True),
    "loopback, as localhost": ("127.0.0.1", "localhost:7778", True),
    "loopback, IPv6 literal": ("::1", "[::1]:7778", True),
    "loopback, a rebound name": ("127.0.0.1", "attacker.example:7778", False),
    "loopback, localhost as a subdomain": ("127.0.0.1", "localhost.attacker.example", False),
    "bound to a name, that name": ("coldmod.internal", "COLDMOD.internal:7778", True),
    "bound to a name, another": ("coldmod.internal", "other.internal:7778", False),
    "every interface, this machine's name": ("0.0.0.0", socket.gethostname() + ":7778", True),
    "every interface, a LAN IP": ("0.0.0.0", "192.168.1.20:7778", True),
    "every interface, a rebound name": ("0.0.0.0", "attacker.example", False),
    "no Host": ("127.0.0.1", "", False),
    "a bad port": ("127.0.0.1", "localhost:77x", False),
    "a broken IPv6 literal": ("127.0.0.1", "[::1", False),
}

#: Component: the static files. Input: a path trying to leave static/. Expected: 400 or 404, no source.
TRAVERSALS = [
    "/static/../httpd.py",
    "/static/%2e%2e/httpd.py",
    "/static/..%2fhttpd.py",
    "/static/%2e%2e%2fhttpd.py",
    "/static//etc/passwd",
    "/static/app.js/../../broker.py",
    "/static/app.js%00.html",
    "/static/./app.js/..",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/APP.JS",
    "/static/app.js.bak",
    "/static/__init__.py",
    "/static/",
    "/static/..\\httpd.py",
    "/static/index.html/../../__init__.py",
    "//etc/passwd",
]

#: Component: connect keys in the key book. Input: a key. Expected: what a CLI presenting it gets.
KEYS: dict[str, tuple[str, Claim]] = {
    "22 As (chosen by a person)": ("A" * 22, Claim.UNKNOWN),
    "128 As": ("A" * 128, Claim.UNKNOWN),
    "random, never issued": ("x5T0o0vQ2mZq9kL1bN4sR7uW", Claim.UNKNOWN),
}

#: Component: ``$EDITOR`` for Open. Input: the variable. Expected: the argv (no shell ever runs it).
EDITORS: dict[str, tuple[str, list[str]]] = {
    "vim": ("vim", ["vim", "+7", "/r/a.py"]),
    "a shell command": ("vim; touch /tmp/pwned", ["vim;", "touch", "/tmp/pwned", "+7", "/r/a.py"]),
    "command substitution": ("$(touch /tmp/pwned)", ["$(touch", "/tmp/pwned)", "+7", "/r/a.py"]),
    "backticks": ("`id`", ["`id`", "+7", "/r/a.py"]),
    "quoted path": ("'/opt/my editor/ed' -x", ["/opt/my editor/ed", "-x", "+7", "/r/a.py"]),
    "VS Code": ("code --wait", ["code", "--wait", "--goto", "/r/a.py:7"]),
}

#: Component: rendering in Chromium. Input: hostile app, key and path names. Expected: shown as text.
HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    '"><svg onload=alert(3)>',
    "javascript:alert(4)",
    "{{constructor.constructor('alert(5)')()}}",
    "&lt;b&gt;entity&lt;/b&gt;",
    "\u202eevil\u202c",
    "a" * 300,
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One collector with TLS and an API key for the module; its CA's context for clients."""
    ca = trustme.CA()
    with running_stack(tmp_path_factory.mktemp("matrix"), api_key=API_KEY, tls=ca) as stack:
        yield stack, ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())


def request(secured: Any, method: str, path: str, authorization: str | None) -> tuple[int, bytes]:
    """One request on its own connection: (status, body)."""
    stack, context = secured
    connection = http.client.HTTPSConnection("127.0.0.1", stack.web.port, context=context, timeout=10)
    headers = {"Content-Type": "application/json", "X-Coldmod": "1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = b"{}" if method == "POST" else None
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("credentials", list(CREDENTIALS))
def test_auth_on_every_web_route(secured: Any, route: str, credentials: str) -> None:
    method, path, expected = ROUTES[route]
    header, refusal = CREDENTIALS[credentials]
    status, _ = request(secured, method, path, header)
    assert status == (refusal or expected)


def test_the_event_streams_need_auth_too(secured: Any) -> None:
    for path in ("/api/events", "/api/events/AAAAAAAAAAAAAAAAAAAAAA?token=x"):
        assert request(secured, "GET", path, None)[0] == 401
        assert request(secured, "GET", path, CREDENTIALS["wrong password"][0])[0] == 401


@pytest.mark.parametrize("name", list(HOSTS))
def test_host_names_an_insecure_ui_answers_to(name: str) -> None:
    bound, header, served = HOSTS[name]
    names = _own_names(bound)
    host = _host_name(header)
    assert (bool(host) and (host in names or _is_ip(host))) is served


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(secured: Any, path: str) -> None:
    status, body = request(secured, "GET", path, CREDENTIALS["right"][0])
    assert status in (400, 404)
    assert b"import " not in body
    assert b"root:" not in body


@pytest.mark.parametrize("name", list(KEYS))
def test_keys_the_collector_did_not_issue(name: str) -> None:
    from coldmod_cli.web.broker import Broker, _digest

    key, expected = KEYS[name]
    broker = Broker()
    assert broker.keys.claim(_digest(key), "cli", _digest("a-cli"), 60.0) is expected
    with pytest.raises(BrokerError, match="did not issue"):
        broker.claim_ui(key)


def test_an_issued_key_has_one_holder_per_side_and_expires() -> None:
    now = [0.0]
    book = MemoryKeyBook(clock=lambda: now[0])
    assert book.issue(b"k", 10.0, limit=2)
    assert book.claim(b"k", "cli", b"cli-1", 10.0) is Claim.OK
    assert book.claim(b"k", "cli", b"cli-1", 10.0) is Claim.OK  # its own reconnect
    assert book.claim(b"k", "cli", b"cli-2", 10.0) is Claim.TAKEN  # another CLI
    assert book.claim(b"k", "ui", b"page-1", 10.0, bind=False) is Claim.TAKEN  # checking never binds
    assert book.claim(b"k", "ui", b"page-1", 10.0) is Claim.OK
    assert book.claim(b"k", "ui", b"page-2", 10.0) is Claim.TAKEN
    now[0] = 25.0
    assert book.claim(b"k", "cli", b"cli-1", 10.0) is Claim.UNKNOWN  # expired
    assert book.issue(b"a", 10.0, limit=2)
    assert book.issue(b"b", 10.0, limit=2)
    assert not book.issue(b"c", 10.0, limit=2)  # full: refused, memory bounded


@pytest.mark.parametrize("name", list(EDITORS))
def test_editor_commands_are_argv_never_a_shell(name: str) -> None:
    value, argv = EDITORS[name]
    assert editor_command(value, "/r/a.py", 7) == argv


def test_hostile_names_render_as_text(secured: Any, browser: Browser) -> None:
    stack, _ = secured
    # Straight into the store the UI reads (the gRPC way in is tested with the server's hostile inputs).
    for i, name in enumerate(HOSTILE_NAMES):
        source = Source(key=f"pkg.{name}", path=f"{name}.py", lines=(1,))
        stack.store.register(f"app{i}{name}", [source], now_ms=int(time.time() * 1000))
    context = browser.new_context(
        ignore_https_errors=True, http_credentials={"username": "coldmod", "password": API_KEY}
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("dialog", lambda dialog: (problems.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: problems.append(str(error)))
    for i, name in enumerate(HOSTILE_NAMES):
        page.goto(stack.url + "/#app=" + _quote(f"app{i}{name}"))
        page.reload()
        expect(page.locator("#rows tbody tr[data-key]")).to_have_count(1)
        expect(page.locator("td.key .k")).to_have_text(f"pkg.{name}")
        expect(page.locator("td.where")).to_have_text(f"{name}.py:1")
        assert page.locator("script").count() == 1
        assert page.locator("#rows img, #rows svg, #rows b").count() == 0
    page.wait_for_timeout(200)
    context.close()
    assert problems == []


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_the_matrix_is_what_the_docstring_says() -> None:
    """A guard for the table itself: every component has rows, and none of them is trivial."""
    assert len(CREDENTIALS) * len(ROUTES) >= 100
    assert len(TRAVERSALS) >= 15
    assert all(argv[0] != "sh" for _, argv in EDITORS.values())
    assert Path(__file__).name == "test_web_matrix.py"
