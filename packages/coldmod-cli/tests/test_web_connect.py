"""Connect mode: a real ``connect()`` in this process, a real collector, a real checkout, Chromium."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect
from web_fixtures import (  # noqa: F401 - `browser` is a fixture: pytest finds it by name
    CALLS,
    Cli,
    Session,
    Stack,
    browser,
    checkout_sources,
    running_stack,
    wait_for,
    write_checkout,
)

from coldmod_cli._errors import CliError, UsageError
from coldmod_cli.connect import connect, editor_command, key_from_url, read_key, ui_url
from coldmod_cli.web import BrokerError, ConnectService, valid_key
from coldmod_cli.web.broker import CLI_TOKEN_METADATA
from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)


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


ROWS = "#rows tbody tr[data-key]"


def row(page: Page, key: str) -> Any:
    """The table row of ``key``."""
    return page.locator(f'tr[data-key="{key}"]')


def test_connect_flow_in_the_browser(stack: Stack, checkout: Path, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{stack.url}/")
    # The collector makes the key; the copy box says how to hand it over without argv.
    page.click("#connect-new")
    expect(page.locator("#connect-state")).to_have_text("waiting for the CLI")
    expect(page.locator("#pairing")).to_contain_text("coldmod connect --stdin")
    expect(page.locator("#pairing")).to_contain_text("never from the command line")
    key = page.locator("#pairing-key").inner_text()
    assert valid_key(key)
    assert f"connect={key}" in page.url

    cli = Cli(stack, checkout, key)
    try:
        expect(page.locator("#connect-state")).to_have_text("CLI connected")
        expect(page.locator("#connect-where")).to_contain_text(str(checkout))
        # Verdicts arrive in the background: the referenced cold one is unsafe; a called one is "called".
        expect(row(page, "shop.cart.total").locator("td").nth(7)).to_have_text(re.compile("unsafe|review"))
        expect(row(page, "shop.cart.clear").locator("td").nth(7)).to_have_text("safe")
        expect(row(page, "shop.views.index").locator("td").nth(7)).to_have_text("called")
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
        expect(page.locator(ROWS)).to_have_count(1)
        expect(page.locator('[data-count="ignored"] b')).to_have_text("1")
        page.click('[data-filter="all"]')

        # A called function is never "safe to remove": its calls first, and no way to apply.
        row(page, "shop.views.index").locator('[data-action="remove"]').click()
        expect(page.locator("#dialog")).to_be_visible()
        expect(page.locator("#dialog-calls")).to_contain_text("Called 1,500 times in production")
        expect(page.locator("#dialog-apply")).to_be_hidden()
        assert "safe to remove" not in page.locator("#dialog").inner_text().lower()
        page.click("#dialog-cancel")

        # Remove, cold and safe: the diff and verdict first, the file changes only on confirmation.
        cart = checkout / "shop" / "cart.py"
        row(page, "shop.cart.clear").locator('[data-action="remove"]').click()
        expect(page.locator("#dialog")).to_be_visible()
        expect(page.locator("#dialog-calls")).to_contain_text("Never called in production")
        expect(page.locator("#dialog-verdict")).to_contain_text("Verdict: safe")
        expect(page.locator("#dialog-diff")).to_contain_text("-def clear():")
        assert "def clear():" in cart.read_text()
        cold_before = int(page.locator('[data-count="cold"] b').inner_text())
        page.click("#dialog-apply")
        expect(page.locator("#dialog")).to_be_hidden()
        expect(page.locator("#toast")).to_contain_text("Removed shop.cart.clear")
        assert "def clear():" not in cart.read_text()
        assert "def total(items):" in cart.read_text()
        # The heatmap keeps the key until the app runs without it: the row says so, and it is no longer cold.
        expect(row(page, "shop.cart.clear")).to_contain_text("removed in the checkout; redeploy to update the heatmap")
        expect(row(page, "shop.cart.clear").locator("td").first).to_have_text("removed")
        expect(row(page, "shop.cart.clear").locator("button")).to_have_count(0)
        expect(page.locator('[data-count="cold"] b')).to_have_text(str(cold_before - 1))

        # Remove, referenced: the reasons, and no way to apply.
        row(page, "shop.cart.total").locator('[data-action="remove"]').click()
        expect(page.locator("#dialog-verdict")).to_contain_text(re.compile("Verdict: (unsafe|review)"))
        # One line per group of findings, as `rm --dry-run` prints them (clear() is gone: line 10).
        expect(page.locator("#dialog-reasons li")).to_have_text(
            ["from live code (1): shop/cart.py:10 call in shop.cart.summary"])
        expect(page.locator("#dialog-apply")).to_be_hidden()
        page.click("#dialog-cancel")
        # Even a hand-made apply request from the page is refused by the CLI.
        answer = page.evaluate(
            """async (key) => {
                const token = localStorage.getItem("coldmod-pairing:" + key);
                const r = await fetch(`/api/connect/${key}/commands`, {method: "POST",
                  headers: {"Content-Type": "application/json", "X-Coldmod": "1", "X-Coldmod-Token": token},
                  body: JSON.stringify({command: "apply_removal", key: "shop.cart.total"})});
                return {status: r.status, body: await r.json()};
            }""",
            key,
        )
        assert answer["status"] == 200
        assert answer["body"]["ok"] is False
        assert "def total(items):" in cart.read_text()

        # A second page opened on the same link holds nothing: a key from a link opens no pairing.
        other = browser.new_context()
        stranger = other.new_page()
        stranger.goto(f"{stack.url}/#connect={key}")
        expect(stranger.locator("#pairing-error")).to_contain_text("open in another browser")
        expect(stranger.locator("#pairing")).to_be_hidden()
        other.close()

        # The CLI goes away: the page says so; a closed page does not stop the CLI.
        cli.close()
        expect(page.locator("#connect-state")).to_have_text("CLI disconnected")
        expect(page.locator("#connect-new")).to_have_text("New pairing")  # the way on for a new CLI
        cli = Cli(stack, checkout, key)
        cli.thread.join(10)
        assert isinstance(cli.failure, CliError)  # another process: it cannot take the pairing over
        assert "cannot be taken over" in str(cli.failure)
        page.click("#connect-new")
        expect(page.locator("#connect-state")).to_have_text("waiting for the CLI")
        assert page.locator("#pairing-key").inner_text() not in ("", key)
        context.close()
        assert dialogs == []
    finally:
        cli.close()


def test_commands_need_the_page_header_the_pages_token_and_a_cli(stack: Stack) -> None:
    import urllib.error
    import urllib.request

    key, token = stack.pairing()

    def post(headers: dict[str, str], to: str = key) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"command": "ignore", "key": "shop.cart.clear"}).encode()
        request = urllib.request.Request(f"{stack.url}/api/connect/{to}/commands", body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    page = {"Content-Type": "application/json", "X-Coldmod": "1"}
    # A form on another site cannot send this header (no CORS preflight is ever granted).
    assert post({"Content-Type": "text/plain"})[0] == 403
    status, answer = post(page)
    assert status == 409
    assert "does not hold this pairing" in answer["error"]
    status, answer = post(page | {"X-Coldmod-Token": token}, to="A" * 22)
    assert status == 409
    assert "did not issue" in answer["error"]
    status, answer = post(page | {"X-Coldmod-Token": token})
    assert status == 409
    assert "no CLI is connected" in answer["error"]


def test_open_runs_the_editor_without_a_shell(stack: Stack, checkout: Path, tmp_path: Path) -> None:
    recorder = tmp_path / "editor.py"
    recorded = tmp_path / "argv.json"
    recorder.write_text(f"import json, sys\nopen({str(recorded)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    key, token = stack.pairing()
    session = Session(stack, key, token)
    cli = Cli(stack, checkout, key, env={"EDITOR": f"{sys.executable} {recorder}", "VISUAL": ""})
    try:
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        result = stack.broker.command(key, token, "open", "shop.cart.summary")
        assert result["ok"], result
        wait_for(recorded.exists, what="the editor to run")
        assert json.loads(recorded.read_text()) == ["+13", str(checkout / "shop" / "cart.py")]
        refused = stack.broker.command(key, token, "open", "shop.old.gone; rm -rf /")
        assert refused["ok"] is False
        assert "not a function of the checkout" in refused["message"]
    finally:
        cli.close()
        session.close()


def test_a_cli_reconnects_after_the_collector_restarts(stack: Stack, checkout: Path) -> None:
    key, token = stack.pairing()
    session = Session(stack, key, token)
    cli = Cli(stack, checkout, key)
    try:
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        stack.grpc_server.stop(0).wait()
        wait_for(lambda: not session.cli()["connected"], what="the broker to see the CLI gone")
        # A new gRPC server on the same port, brokering for the same UI: the same CLI may reattach.
        server = grpc.server(ThreadPoolExecutor(8))
        pb_grpc.add_ConnectServicer_to_server(ConnectService(stack.broker), server)
        assert server.add_insecure_port(stack.grpc_target) == stack.grpc_port
        server.start()
        try:
            wait_for(lambda: session.cli()["connected"], timeout=15, what="the CLI to reconnect")
            sources = [data for name, data in session.events if name == "sources"][-1]
            assert "shop.cart.clear" in {s["key"] for s in sources}
            assert cli.failure is None
        finally:
            cli.close()
            server.stop(0).wait()
    finally:
        session.close()


def attach(stack: Stack, key: str, token: str = "a-cli-token") -> grpc.RpcError:
    """The error an Attach with ``key`` ends with (it must end with one)."""
    with stack.channel() as channel:
        call = pb_grpc.ConnectStub(channel).Attach(
            iter([pb.CliEvent(hello=pb.CliHello(connect_key=key, app="a", root="/r", hostname="h"))]),
            metadata=((CLI_TOKEN_METADATA, token),),
        )
        with pytest.raises(grpc.RpcError) as raised:
            list(call)
    return raised.value


def test_keys_the_collector_did_not_issue_pair_nothing(stack: Stack) -> None:
    assert attach(stack, "short").code() == grpc.StatusCode.INVALID_ARGUMENT
    for chosen in ("A" * 22, "A" * 32, secrets.token_urlsafe(24)):
        refused = attach(stack, chosen)
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "did not issue this connect key" in (refused.details() or "")
        with pytest.raises(BrokerError, match="did not issue"):
            stack.broker.claim_ui(chosen)
        with pytest.raises(BrokerError, match="did not issue"):
            stack.broker.listen(chosen, "any-token", lambda *_: None)


def test_a_second_cli_cannot_take_over_a_pairing(stack: Stack, checkout: Path) -> None:
    key, token = stack.pairing()
    session = Session(stack, key, token)
    cli = Cli(stack, checkout, key)
    try:
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        refused = attach(stack, key, token="another-cli")
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot be taken over" in (refused.details() or "")
        with pytest.raises(CliError, match="cannot be taken over"):
            connect(None, checkout, env=stack.env() | {"COLDMOD_CONNECT_KEY": key})
        assert session.cli()["connected"]
        assert cli.failure is None
    finally:
        cli.close()
        session.close()


def test_the_key_never_comes_from_argv_and_a_key_file_must_be_private(
    stack: Stack, checkout: Path, tmp_path: Path
) -> None:
    key, _ = stack.pairing()
    for given in (f"{stack.url}/#connect={key}", key, f"{stack.url}/?connect={key}"):
        with pytest.raises(UsageError, match="must not be on the command line"):
            connect(given, checkout, env=stack.env())
    shared = tmp_path / "shared.key"
    shared.write_text(key)
    shared.chmod(0o644)
    with pytest.raises(UsageError, match="can be read by others"):
        read_key(None, stdin=False, key_file=str(shared), env={})
    shared.chmod(0o600)
    assert read_key(None, stdin=False, key_file=str(shared), env={}) == key
    assert read_key(None, stdin=True, key_file=None, env={}, stream=io.StringIO(f"{stack.url}/#connect={key}\n")) == key
    assert read_key(None, stdin=False, key_file=None, env={"COLDMOD_CONNECT_KEY": key}) == key
    assert read_key(None, stdin=False, key_file=None, env={}) == ""  # a new pairing, issued by the collector
    with pytest.raises(UsageError, match="holds no connect key"):
        read_key(None, stdin=True, key_file=None, env={}, stream=io.StringIO("not a key\n"))


def test_coldmod_connect_reads_the_key_from_stdin_and_it_is_not_in_its_command_line(
    stack: Stack, checkout: Path
) -> None:
    key, token = stack.pairing()
    session = Session(stack, key, token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDMOD_")} | stack.env()
    argv = [str(Path(sys.executable).with_name("coldmod")), "connect", "--stdin"]
    process = subprocess.Popen(
        argv, cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdin is not None
        process.stdin.write(key + "\n")
        process.stdin.flush()
        wait_for(lambda: session.cli()["connected"], timeout=30, what="`coldmod connect --stdin` to attach")
        assert session.cli()["root"] == str(checkout)
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        assert b"connect" in cmdline
        assert key.encode() not in cmdline
        assert key.encode() not in environ
    finally:
        process.terminate()
        process.communicate(timeout=10)
        session.close()
    refused = subprocess.run(
        [*argv[:2], f"{stack.url}/#connect={key}"], cwd=checkout, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert refused.returncode == 2
    assert "must not be on the command line" in refused.stderr
    assert "Traceback" not in refused.stderr
    chosen = subprocess.run(  # a key nobody issued: one sentence, exit 1, no retrying forever
        argv[:2], cwd=checkout, env=env | {"COLDMOD_CONNECT_KEY": "A" * 22}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert chosen.returncode == 1, chosen.stderr
    assert "did not issue this connect key" in chosen.stderr
    assert "Traceback" not in chosen.stderr
    assert "connected" not in chosen.stderr  # never before the key is accepted


def test_connect_never_says_connected_before_a_refusal(
    stack: Stack, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(5):  # the refusal and the initial metadata race in grpc: try it a few times
        with pytest.raises(CliError, match="did not issue this connect key"):
            connect(None, checkout, env=stack.env() | {"COLDMOD_CONNECT_KEY": secrets.token_urlsafe(24)})
        assert "connected" not in capsys.readouterr().err


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


def test_connect_without_a_key_gets_one_from_the_collector_and_prints_its_page(
    stack: Stack, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = threading.Event()
    thread = threading.Thread(
        target=connect, args=(None, checkout), kwargs={"stop": stop, "env": stack.env()}, daemon=True
    )
    thread.start()
    try:
        printed = wait_for(lambda: capsys.readouterr().out, what="the URL")
        url = printed.strip()
        assert url.startswith(f"{stack.url}/#connect=")
        key = key_from_url(url)
        token = stack.broker.claim_ui(key)  # the first page to open it holds it
        with pytest.raises(BrokerError, match="another browser"):
            stack.broker.claim_ui(key)
        session = Session(stack, key, token)
        wait_for(lambda: session.cli()["connected"], what="the CLI to attach")
        assert session.cli()["root"] == str(checkout)
        session.close()
    finally:
        stop.set()
        thread.join(10)


def test_connect_with_a_wrong_api_key_is_one_sentence(tmp_path: Path, checkout: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.cert_pem.bytes())
    with running_stack(tmp_path, api_key="the-right-key", tls=ca) as secured:
        env = secured.env() | {"COLDMOD_API_KEY": "a-wrong-key", "COLDMOD_TLS_CA": str(ca_path)}
        with pytest.raises(CliError, match="refused the credentials"):
            connect(None, checkout, env=env)


def paired_page(stack: Stack, browser: Browser, **context: Any) -> tuple[Any, Page, str]:
    """A browser context and its page paired through 'Connect a checkout'; returns (context, page, key)."""
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    page.goto(f"{stack.url}/")
    page.click("#connect-new")
    expect(page.locator("#connect-state")).to_have_text("waiting for the CLI")
    return ctx, page, page.locator("#pairing-key").inner_text()


def test_a_phone_shows_verdict_reasons_and_actions_when_a_row_is_tapped(
    stack: Stack, checkout: Path, browser: Browser
) -> None:
    ctx, page, key = paired_page(stack, browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    cli = Cli(stack, checkout, key)
    try:
        expect(page.locator("#connect-state")).to_have_text("CLI connected")
        expect(page.locator("#details")).to_be_hidden()
        row(page, "shop.cart.total").tap()
        details = page.locator("#details")
        expect(details).to_be_visible()
        expect(page.locator("#details-key")).to_have_text("shop.cart.total")
        expect(page.locator("#details-verdict")).to_contain_text(re.compile("Verdict: (unsafe|review)"))
        expect(page.locator("#details-reasons")).to_contain_text("shop/cart.py:")
        expect(details).to_contain_text("shop/cart.py:")
        for action in ("ignore", "remove", "open"):
            button = details.locator(f'[data-action="{action}"]')
            expect(button).to_be_visible()
            expect(button).to_be_in_viewport()
            expect(button).to_be_enabled()
        # The sheet shows the history's facts too, and its key reads whole within the phone's width.
        expect(details.locator('[data-fact="last-call"]')).to_be_visible()
        sheet = page.evaluate(
            """() => { const key = document.getElementById("details-key"), box = document.getElementById("details");
                return {right: box.getBoundingClientRect().right, cut: key.scrollWidth > key.clientWidth + 1}; }"""
        )
        assert sheet["right"] <= 390, sheet
        assert not sheet["cut"], sheet
        # The sheet's Remove is the table's: the dialog with the verdict and the diff.
        details.locator('[data-action="remove"]').tap()
        expect(page.locator("#dialog")).to_be_visible()
        expect(page.locator("#dialog-verdict")).to_contain_text(re.compile("Verdict: (unsafe|review)"))
        page.locator("#dialog-cancel").tap()
        page.locator("#details-close").tap()
        expect(details).to_be_hidden()
        # Every key reads whole: nothing cut by the width or the line clamp, and nothing wider than the phone.
        sizes = page.evaluate(
            """() => ({
                page: document.documentElement.scrollWidth,
                cut: [...document.querySelectorAll("#rows td.key .k")].filter(
                    (k) => k.scrollWidth > k.clientWidth + 1 || k.scrollHeight > k.clientHeight + 1
                ).map((k) => k.textContent),
                keyWidth: document.querySelector("#rows td.key").getBoundingClientRect().width,
            })"""
        )
        assert sizes["page"] <= 390, sizes
        assert sizes["cut"] == [], sizes
        assert sizes["keyWidth"] >= 0.55 * 390, sizes  # the verdict and actions columns gave it their width
    finally:
        cli.close()
        ctx.close()


def test_every_action_button_is_whole_at_1280_px(stack: Stack, checkout: Path, browser: Browser) -> None:
    ctx, page, key = paired_page(stack, browser, viewport={"width": 1280, "height": 860})
    cli = Cli(stack, checkout, key)
    try:
        expect(page.locator("#connect-state")).to_have_text("CLI connected")
        expect(row(page, "shop.cart.clear").locator('[data-action="open"]')).to_be_enabled()
        clipped = page.evaluate(
            """() => [...document.querySelectorAll("#rows td.actions button")].filter((b) => {
                const cell = b.closest("td").getBoundingClientRect(), box = b.getBoundingClientRect();
                return box.right > cell.right + 0.5 || box.right > window.innerWidth || box.width < 20;
            }).map((b) => b.closest("tr").dataset.key + ":" + b.dataset.action)"""
        )
        assert clipped == []
        assert page.locator("#rows td.actions button").count() >= 9
        # With room to spare: a wider system font (the one a Mac draws) must not push Open out either.
        spare = page.evaluate(
            """() => { const cell = document.querySelector("#rows td.actions");
                const buttons = [...cell.querySelectorAll("button")];
                const used = buttons.at(-1).getBoundingClientRect().right - cell.getBoundingClientRect().left;
                return cell.getBoundingClientRect().width / used; }"""
        )
        assert spare >= 1.1, spare
    finally:
        cli.close()
        ctx.close()
