"""Connect mode: a real ``connect()`` in this process, a real collector, a real checkout, Chromium."""

from __future__ import annotations

import json
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect
from web_fixtures import (  # noqa: F401 - `browser` is a fixture: pytest finds it by name
    CALLS,
    Stack,
    browser,
    checkout_sources,
    running_stack,
    wait_for,
    write_checkout,
)

from coldmod_cli._errors import UsageError
from coldmod_cli.connect import connect, editor_command, key_from_url, ui_url
from coldmod_cli.web import ConnectService
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)


class Cli:
    """``connect()`` running in a thread, stopped through its ``stop`` event."""

    def __init__(self, stack: Stack, root: Path, key: str, env: dict[str, str] | None = None) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=connect,
            args=(f"{stack.url}/#connect={key}", root),
            kwargs={"open_browser": False, "stop": self.stop, "env": stack.env() | (env or {})},
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        """Stop it and wait until it has."""
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


class Session:
    """What a UI of the session sees, through the relay's own listener API."""

    def __init__(self, stack: Stack, key: str) -> None:
        self.events: list[tuple[str, Any]] = []
        self._unlisten = stack.relay.listen(key, lambda name, data: self.events.append((name, data)))

    def cli(self) -> dict[str, Any]:
        """The last CLI state."""
        return [data for name, data in self.events if name == "cli"][-1]

    def close(self) -> None:
        """Stop listening."""
        self._unlisten()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The web tests' checkout."""
    return write_checkout(tmp_path / "checkout")


@pytest.fixture
def stack(tmp_path: Path, checkout: Path) -> Iterator[Stack]:
    """An insecure collector with the checkout registered (plus a key the checkout no longer has)."""
    with running_stack(tmp_path) as running:
        running.register("webshop", [*checkout_sources(checkout), ("shop.old.gone", "shop/old.py", 3)])
        running.report("webshop", CALLS)
        yield running


def row(page: Page, key: str) -> Any:
    """The table row of ``key``."""
    return page.locator(f'tr[data-key="{key}"]')


def test_connect_flow_in_the_browser(stack: Stack, checkout: Path, browser: Browser) -> None:
    key = secrets.token_urlsafe(24)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{stack.url}/#connect={key}")
    expect(page.locator("#connect-state")).to_have_text("waiting for the CLI")
    expect(page.locator("#pairing-command")).to_contain_text(f"#connect={key}")

    cli = Cli(stack, checkout, key)
    try:
        expect(page.locator("#connect-state")).to_have_text("CLI connected")
        expect(page.locator("#connect-where")).to_contain_text(str(checkout))
        # Reference counts arrive in the background; the referenced one is unsafe.
        expect(row(page, "shop.cart.total").locator("td").nth(6)).to_have_text("1")
        expect(row(page, "shop.cart.clear").locator("td").nth(6)).to_have_text("0")
        # A key the checkout does not have: no actions, and it says so.
        expect(row(page, "shop.old.gone")).to_contain_text("not in checkout")
        expect(row(page, "shop.old.gone").locator("button")).to_have_count(0)

        # Ignore: the CLI edits the rootmarker, keeping its comment.
        marker = checkout / "coldmod.rootmarker"
        row(page, "shop.views.legacy").locator('[data-action="ignore"]').click()
        expect(page.locator("#toast")).to_contain_text("Ignored shop.views.legacy")
        text = marker.read_text()
        assert '"shop.views.legacy"' in text
        assert "# The web tests' checkout: this comment must survive an Ignore." in text
        expect(row(page, "shop.views.legacy")).to_contain_text("ignored")
        expect(row(page, "shop.views.legacy").locator('[data-action="remove"]')).to_have_count(0)
        page.click('[data-filter="ignored"]')
        expect(page.locator("#rows tbody tr")).to_have_count(1)
        expect(page.locator('[data-count="ignored"] b')).to_have_text("1")
        page.click('[data-filter="all"]')

        # Remove, safe: the diff and verdict first, the file changes only on confirmation.
        cart = checkout / "shop" / "cart.py"
        row(page, "shop.cart.clear").locator('[data-action="remove"]').click()
        expect(page.locator("#dialog")).to_be_visible()
        expect(page.locator("#dialog-verdict")).to_contain_text("Safe to remove")
        expect(page.locator("#dialog-diff")).to_contain_text("-def clear():")
        assert "def clear():" in cart.read_text()
        page.click("#dialog-apply")
        expect(page.locator("#dialog")).to_be_hidden()
        expect(page.locator("#toast")).to_contain_text("Removed shop.cart.clear")
        assert "def clear():" not in cart.read_text()
        assert "def total(items):" in cart.read_text()
        expect(row(page, "shop.cart.clear")).to_contain_text("not in checkout")

        # Remove, unsafe: the reasons, and no way to apply.
        row(page, "shop.cart.total").locator('[data-action="remove"]').click()
        expect(page.locator("#dialog-verdict")).to_contain_text("Unsafe")
        expect(page.locator("#dialog-reasons")).to_contain_text("shop/cart.py:")
        expect(page.locator("#dialog-apply")).to_be_hidden()
        page.click("#dialog-cancel")
        # Even a hand-made apply request is refused by the CLI.
        answer = page.evaluate(
            """async (key) => {
                const r = await fetch(`/api/connect/${key}/commands`, {method: "POST",
                  headers: {"Content-Type": "application/json", "X-Coldmod": "1"},
                  body: JSON.stringify({command: "apply_removal", key: "shop.cart.total"})});
                return {status: r.status, body: await r.json()};
            }""",
            key,
        )
        assert answer["status"] == 200
        assert answer["body"]["ok"] is False
        assert "unsafe" in answer["body"]["message"]
        assert "def total(items):" in cart.read_text()

        # The CLI goes away, then comes back with the same key; a closed page does not stop it.
        cli.close()
        expect(page.locator("#connect-state")).to_have_text("CLI disconnected")
        cli = Cli(stack, checkout, key)
        expect(page.locator("#connect-state")).to_have_text("CLI connected")
        context.close()
        assert cli.thread.is_alive()
        assert dialogs == []
    finally:
        cli.close()


def test_commands_refused_without_the_page_header_or_a_cli(stack: Stack) -> None:
    import urllib.error
    import urllib.request

    key = secrets.token_urlsafe(24)

    def post(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"command": "ignore", "key": "shop.cart.clear"}).encode()
        request = urllib.request.Request(f"{stack.url}/api/connect/{key}/commands", body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    # A form on another site cannot send this header (no CORS preflight is ever granted).
    assert post({"Content-Type": "text/plain"})[0] == 403
    status, answer = post({"Content-Type": "application/json", "X-Coldmod": "1"})
    assert status == 409
    assert "no CLI is connected" in answer["error"]


def test_open_runs_the_editor_without_a_shell(stack: Stack, checkout: Path, tmp_path: Path) -> None:
    recorder = tmp_path / "editor.py"
    recorded = tmp_path / "argv.json"
    recorder.write_text(f"import json, sys\nopen({str(recorded)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    key = secrets.token_urlsafe(24)
    session = Session(stack, key)
    cli = Cli(stack, checkout, key, env={"EDITOR": f"{sys.executable} {recorder}", "VISUAL": ""})
    try:
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        result = stack.relay.command(key, "open", "shop.cart.summary")
        assert result["ok"], result
        wait_for(recorded.exists, what="the editor to run")
        assert json.loads(recorded.read_text()) == ["+13", str(checkout / "shop" / "cart.py")]
        refused = stack.relay.command(key, "open", "shop.old.gone; rm -rf /")
        assert refused["ok"] is False
        assert "not a function of the checkout" in refused["message"]
    finally:
        cli.close()
        session.close()


def test_a_cli_reconnects_after_the_collector_restarts(stack: Stack, checkout: Path) -> None:
    key = secrets.token_urlsafe(24)
    session = Session(stack, key)
    cli = Cli(stack, checkout, key)
    try:
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        stack.grpc_server.stop(0).wait()
        wait_for(lambda: not session.cli()["connected"], what="the relay to see the CLI gone")
        # A new gRPC server on the same port, relaying into the same UI.
        server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(8))
        pb_grpc.add_ConnectServicer_to_server(ConnectService(stack.relay), server)
        assert server.add_insecure_port(stack.grpc_target) == stack.grpc_port
        server.start()
        try:
            wait_for(lambda: session.cli()["connected"], timeout=15, what="the CLI to reconnect")
            sources = [data for name, data in session.events if name == "sources"][-1]
            assert "shop.cart.clear" in {s["key"] for s in sources}
        finally:
            cli.close()
            server.stop(0).wait()
    finally:
        session.close()


def test_a_bad_connect_key_is_refused_by_the_collector(stack: Stack) -> None:
    with stack.channel() as channel:
        call = pb_grpc.ConnectStub(channel).Attach(
            iter([pb.CliEvent(hello=pb.CliHello(connect_key="short", app="a", root="/r", hostname="h"))])
        )
        with pytest.raises(grpc.RpcError) as raised:
            list(call)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_urls_keys_and_editor_commands() -> None:
    key = secrets.token_urlsafe(24)
    assert len(key) == 32  # 192 bits
    assert key_from_url(f"https://ui.example:7778/#connect={key}") == key
    assert key_from_url(f"https://ui.example:7778/#app=shop&connect={key}") == key
    assert key_from_url(key) == key
    with pytest.raises(UsageError):
        key_from_url("https://ui.example:7778/#connect=tooshort")
    assert ui_url(key, {"COLDMOD_INSECURE": "on", "COLDMOD_WEB_HOST": "0.0.0.0:9000"}) == (
        f"http://localhost:9000/#connect={key}"
    )
    assert ui_url(key, {"COLDMOD_WEB_HOST": "coldmod.internal:443"}).startswith("https://coldmod.internal:443/")
    assert editor_command("vim", "/r/a.py", 7) == ["vim", "+7", "/r/a.py"]
    assert editor_command("code --wait", "/r/a.py", 7) == ["code", "--wait", "--goto", "/r/a.py:7"]
    assert editor_command("/usr/bin/subl", "/r/a b.py", 7) == ["/usr/bin/subl", "/r/a b.py:7"]


def test_connect_without_a_url_prints_a_new_one_and_opens_nothing_off_a_terminal(
    stack: Stack, checkout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = tmp_path / "opened"
    browser_script = tmp_path / "browser.py"
    browser_script.write_text(f"open({str(opened)!r}, 'w').write('opened')\n")
    stop = threading.Event()
    env = stack.env() | {"BROWSER": f"{sys.executable} {browser_script}"}
    thread = threading.Thread(
        target=connect, args=(None, checkout), kwargs={"stop": stop, "env": env}, daemon=True
    )
    thread.start()
    try:
        printed = wait_for(lambda: capsys.readouterr().out, what="the URL")
        url = printed.strip()
        assert url.startswith(f"{stack.url}/#connect=")
        key = key_from_url(url)
        session = Session(stack, key)
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        assert session.cli()["root"] == str(checkout)
        session.close()
        assert not opened.exists()
    finally:
        stop.set()
        thread.join(10)


def test_connect_with_a_wrong_api_key_is_one_sentence(tmp_path: Path, checkout: Path) -> None:
    import trustme

    from coldmod_cli._errors import CliError

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.cert_pem.bytes())
    with running_stack(tmp_path, api_key="the-right-key", tls=ca) as secured:
        env = secured.env() | {"COLDMOD_API_KEY": "a-wrong-key", "COLDMOD_TLS_CA": str(ca_path)}
        with pytest.raises(CliError, match="refused the credentials"):
            connect(f"{secured.url}/#connect={secrets.token_urlsafe(24)}", checkout, env=env)
