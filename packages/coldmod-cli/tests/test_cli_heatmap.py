"""fetch, cold and status against a real collector subprocess, and every collector error."""

from __future__ import annotations

import json
import re
import sys

import grpc
import pytest
import trustme
from conftest import COLD, HOT, _clean_env, start_collector, traced

from coldmod_proto.v1 import coldmod_pb2 as pb
from coldmod_proto.v1 import coldmod_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_fetch_text_is_a_table_sorted_by_file_and_line(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    result = cli("fetch")

    assert result.code == 0, result.err
    versions, header, *lines = result.out.splitlines()
    assert versions.startswith("1 live version: ") or versions == "no version listed"
    assert header.split() == [
        "CALLS", "7D", "30D", "90D", "LAST", "CALL", "FIRST", "CALL", "VERSIONS", "LOCATION", "KEY"
    ]
    rows = {line.split()[-1]: line.split() for line in lines}
    assert len(rows) == 20
    assert rows["shop.views.product"][0] == "30"
    assert rows["shop.views.coupon"][0] == "0"
    assert rows["shop.views.coupon"][4:6] == ["never", "never"]
    locations = [(r.split()[-2].split(":")[0], int(r.split()[-2].split(":")[1])) for r in lines]
    assert locations == sorted(locations)


def test_fetch_json_shape(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    data = json.loads(cli("fetch", "--format", "json").out)

    assert set(data) == {
        "app",
        "root",
        "registered",
        "now",
        "versions",
        "retire_after_seconds",
        "functions",
        "skipped_server_keys",
        "untracked",
        "dropped_unknown",
        "dropped_updates",
    }
    assert data["app"] == "demo-shop"
    assert data["root"] == str(shop)
    assert ISO.match(data["registered"])
    entry = next(f for f in data["functions"] if f["key"] == "shop.cart.Cart.add")
    assert set(entry) == {
        "key",
        "path",
        "line",
        "tracked",
        "calls",
        "estimated",
        "lower_bound",
        "first_seen",
        "last_seen",
        "tracked_since",
        "calls_7d",
        "calls_30d",
        "calls_90d",
        "versions",
    }
    assert ISO.match(data["now"])
    assert (entry["path"], entry["line"], entry["calls"], entry["tracked"]) == (
        "shop/cart.py",
        14,
        20,
        True,
    )
    assert ISO.match(entry["last_seen"])
    assert ISO.match(entry["tracked_since"])
    never = next(f for f in data["functions"] if f["key"] == "shop.views.coupon")
    assert (never["calls"], never["first_seen"], never["last_seen"]) == (0, None, None)


def test_fetch_skips_server_keys_gone_locally_and_says_how_many(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    catalog = shop / "shop" / "catalog.py"
    text = catalog.read_text()
    catalog.write_text(text[: text.index("def import_legacy_csv")])  # two functions gone locally
    (shop / "shop" / "new.py").write_text("def fresh():\n    pass\n")

    result = cli("fetch", "--format", "json")

    assert result.code == 0
    assert "skipped 2 keys" in result.err
    data = json.loads(result.out)
    assert data["skipped_server_keys"] == 2
    assert data["untracked"] == 1
    fresh = next(f for f in data["functions"] if f["key"] == "shop.new.fresh")
    assert (fresh["tracked"], fresh["calls"]) == (False, None)


def test_fetch_for_an_app_the_collector_does_not_know(cli, shop, insecure_env):
    result = cli("fetch")
    assert "no heatmap for app 'demo-shop' yet" in result.err
    assert "coldmod-trace" in result.err
    assert result.code == 1
    assert "Traceback" not in result.err


def test_cold_lists_never_called_functions_with_a_summary(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    result = cli("cold")

    assert result.code == 0, result.err
    keys = [line.split()[-1] for line in result.out.splitlines()[1:]]
    assert sorted(keys) == sorted(COLD)
    assert keys == [
        "shop.cart.Cart.apply_coupon",
        "shop.cart.Cart.merge",
        "shop.catalog.import_legacy_csv",
        "shop.catalog.format_price_in_dollars",
        "shop.views.coupon",
    ]  # by file, then line
    assert re.search(r"5 of 20 tracked functions are cold \(\d+ of \d+ lines in functions\)", result.err)


def test_cold_json_shape_and_summary(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    data = json.loads(cli("cold", "--format", "json").out)

    assert set(data) == {"app", "root", "now", "cold", "summary"}
    first = data["cold"][0]
    assert (first["key"], first["path"], first["line"], first["calls"]) == (
        "shop.cart.Cart.apply_coupon",
        "shop/cart.py",
        28,
        0,
    )
    assert set(first) == {
        "key",
        "path",
        "line",
        "tracked",
        "calls",
        "estimated",
        "lower_bound",
        "first_seen",
        "last_seen",
        "tracked_since",
        "calls_7d",
        "calls_30d",
        "calls_90d",
        "versions",
        "seasonal",
    }
    assert first["seasonal"] is None
    summary = data["summary"]
    assert summary["cold_functions"] == 5
    assert summary["seasonal_functions"] == 0
    assert summary["tracked_functions"] == 20
    assert summary["untracked_functions"] == 0
    # merge (4 lines), apply_coupon (3), import_legacy_csv (7), format_price_in_dollars (3), coupon (3)
    assert summary["cold_lines"] == 20
    assert 20 < summary["function_lines"] < 200


LINES_MODULE = """\
import functools


@functools.lru_cache(maxsize=None)
def decorated(x):
    return x


def outer():
    def inner():
        return 1

    return inner


class Box:
    @property
    def size(self):
        return 1

    @size.setter
    def size(self, value):
        pass


def hot():
    return 2
"""


def test_cold_line_counts_cover_decorators_nested_functions_and_shared_keys(cli, tmp_path, monkeypatch):
    # Counted with the standard library's ast (end_lineno), tied to keys by each definition's line.
    from coldmod_cli import heatmap
    from coldmod_trace.discovery import discover

    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "lines.py").write_text(LINES_MODULE)
    (tmp_path / "broken.py").write_text("def ok():\n    pass\ndef (\n")  # skipped, never counted
    found = discover(tmp_path, cache=False)
    rows = [heatmap.Row(s.key, s.path, s.lines[0], tracked=True, lines=tuple(s.lines)) for s in found.sources.values()]
    cold = {"lines.decorated", "lines.outer", "lines.Box.size"}

    cold_lines, total_lines = heatmap.line_counts(str(tmp_path), rows, cold, progress=lambda files: files)

    # decorated 3 (its decorator line too), outer 5 (inner inside it, once), Box.size 3 + 3 (getter and setter)
    assert cold_lines == 3 + 5 + 3 + 3
    assert total_lines == cold_lines + 2  # hot is the only other function

    # The extents are cached; an edit (a new function) is seen, garbage in the cache only costs a parse.
    cache = next((tmp_path / ".coldmod-cache").glob("spans-*.marshal"))
    assert heatmap.line_counts(str(tmp_path), rows, cold, progress=lambda files: files) == (cold_lines, total_lines)
    with (tmp_path / "lines.py").open("a") as handle:
        handle.write("\n\ndef added():\n    return 3\n")
    assert heatmap.line_counts(str(tmp_path), rows, cold, progress=lambda files: files) == (14, 18)
    cache.write_bytes(b"garbage")
    assert heatmap.line_counts(str(tmp_path), rows, cold, progress=lambda files: files) == (14, 18)


def test_a_first_cold_parses_each_file_once_discovery_and_extents_from_one_parse(tmp_path, monkeypatch):
    import ast

    from coldmod_cli import heatmap, local

    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "lines.py").write_text(LINES_MODULE)
    (tmp_path / "more.py").write_text("def one():  # coldmod: keep\n    return 1\n")
    parsed: list[str] = []
    real_parse = ast.parse

    def counting_parse(source, filename="<unknown>", *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append(str(filename))
        return real_parse(source, filename, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting_parse)
    found = local.checkout(tmp_path)  # nothing cached yet: discovery parses both files
    rows = [heatmap.Row(s.key, s.path, s.lines[0], tracked=True, lines=tuple(s.lines)) for s in found.sources.values()]
    counts = heatmap.line_counts(str(tmp_path), rows, {"lines.outer"}, progress=lambda files: files)

    assert sorted(parsed) == ["lines.py", "more.py"]  # once each: the extents came from discovery's parse
    assert counts == (5, 16 + 2)  # outer; every function of both files
    cache = heatmap.SpanCache(tmp_path)
    assert cache.spans("more.py") == [(1, 2, 1, 1)]  # the keep marker was read in the same pass


def test_cold_since_and_min_tracked(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    recent = json.loads(cli("cold", "--since", "1h", "--format", "json").out)
    # Nothing has been tracked for an hour: "no call in the last hour" is not known of anything yet.
    assert recent["summary"]["cold_functions"] == 0
    assert recent["summary"]["tracked_too_briefly"] == 5  # the never-called ones (the hot ones ran)
    everything = json.loads(cli("cold", "--since", "0s", "--format", "json").out)
    assert everything["summary"]["cold_functions"] == 20  # nothing ran in the last 0 seconds
    young = json.loads(cli("cold", "--min-tracked", "30d", "--format", "json").out)
    assert young["cold"] == []  # nothing has been tracked for 30 days yet


def test_server_down_is_one_sentence_exit_1(cli, shop, monkeypatch):
    monkeypatch.setenv("COLDMOD_INSECURE", "on")
    monkeypatch.setenv("COLDMOD_GRPC_HOST", "127.0.0.1:9")
    for command in (["fetch"], ["cold"], ["rm", "--cold"], ["status"]):
        result = cli(*command)
        assert result.code == 1, command
        assert "cannot reach the collector at 127.0.0.1:9" in result.err
        assert "coldmod serve" in result.err
        assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COLDMOD_GRPC_HOST": "http://localhost:7777"},
            "COLDMOD_GRPC_HOST='http://localhost:7777' is not a host:port",
        ),
        ({"COLDMOD_GRPC_HOST": "localhost:7777"}, "COLDMOD_API_KEY is not set"),
        (
            {"COLDMOD_API_KEY": "k", "COLDMOD_TLS_CA": "/nonexistent/ca.pem"},
            "COLDMOD_TLS_CA='/nonexistent/ca.pem'",
        ),
    ],
)
def test_missing_or_malformed_variables(cli, shop, monkeypatch, env, message):
    for name in ("COLDMOD_INSECURE", "COLDMOD_API_KEY", "COLDMOD_TLS_CA", "COLDMOD_GRPC_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in (["fetch"], ["status"]):
        result = cli(*command)
        assert result.code == 1
        assert message in result.err
        assert "Traceback" not in result.err


@pytest.fixture
def tls_collector(tmp_path_factory):
    """A collector with TLS and an API key, and the CA that signs it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    env = _clean_env() | {
        "COLDMOD_API_KEY": "the-right-key-0123456789abcdef",
        "COLDMOD_TLS_CERT": str(directory / "cert.pem"),
        "COLDMOD_TLS_KEY": str(directory / "key.pem"),
    }
    server = start_collector(directory, env)
    yield server, directory / "ca.pem"
    server.stop()


def test_bad_credentials_is_one_sentence_exit_1(cli, shop, monkeypatch, tls_collector):
    server, ca = tls_collector
    monkeypatch.delenv("COLDMOD_INSECURE", raising=False)
    monkeypatch.setenv("COLDMOD_GRPC_HOST", server.address)
    monkeypatch.setenv("COLDMOD_TLS_CA", str(ca))
    monkeypatch.setenv("COLDMOD_API_KEY", "a-wrong-key")

    for command in (["fetch"], ["status"]):
        result = cli(*command)
        assert result.code == 1
        assert "refused the credentials" in result.err
        assert "COLDMOD_API_KEY" in result.err
        assert "a-wrong-key" not in result.out + result.err  # never show the secret

    monkeypatch.setenv("COLDMOD_API_KEY", "the-right-key-0123456789abcdef")
    status = cli("status", "--format", "json")
    assert status.code == 0, status.err
    collector = json.loads(status.out)["collector"]
    assert collector["reachable"]
    assert collector["authenticated"]
    assert collector["tls"]
    assert "the-right-key" not in status.out


def test_tls_without_the_ca_says_what_to_set(cli, shop, monkeypatch, tls_collector):
    server, _ca = tls_collector
    monkeypatch.delenv("COLDMOD_INSECURE", raising=False)
    monkeypatch.delenv("COLDMOD_TLS_CA", raising=False)
    monkeypatch.setenv("COLDMOD_GRPC_HOST", server.address)
    monkeypatch.setenv("COLDMOD_API_KEY", "the-right-key-0123456789abcdef")

    result = cli("fetch")

    assert result.code == 1
    assert "COLDMOD_TLS_CA" in result.err
    assert "Traceback" not in result.err


def test_status_text_and_json(cli, shop, insecure_env, monkeypatch):
    monkeypatch.setenv("COLDMOD_API_KEY", "s3cret-value")
    traced(insecure_env.address, shop, HOT)

    text = cli("status")
    assert text.code == 0, text.err
    assert f"root:         {shop}" in text.out
    assert "app:          demo-shop" in text.out
    assert "functions:    20" in text.out
    assert "s3cret-value" not in text.out
    assert "COLDMOD_API_KEY=set (12 characters, hidden)" in text.out

    data = json.loads(cli("status", "--format", "json").out)
    assert set(data) >= {
        "root",
        "app",
        "files",
        "functions",
        "environment",
        "collector",
        "tracing",
        "problems",
    }
    assert (data["files"], data["functions"], data["problems"]) == (5, 20, [])
    assert data["collector"]["reachable"]
    assert data["collector"]["apps"] == 1
    expected = "sys.monitoring" if sys.version_info >= (3, 12) else "sys.settrace"
    assert data["tracing"]["engine"] == expected


def test_status_without_rootmarker_still_reports_the_rest(cli, tmp_path, monkeypatch, insecure_env):
    monkeypatch.chdir(tmp_path)

    result = cli("status", "--format", "json")

    assert result.code == 1
    data = json.loads(result.out)
    assert data["root"] is None
    assert data["collector"]["reachable"]
    assert "no coldmod.rootmarker" in data["problems"][0]


def test_a_lower_bound_count_shows_as_at_least(cli, shop, insecure_env):
    traced(insecure_env.address, shop, {"shop.cart.Cart.add": 20})
    with grpc.insecure_channel(insecure_env.address) as channel:  # a second process whose count is ">= 7"
        pb_grpc.TracingStub(channel).Report(
            pb.ReportRequest(
                app="demo-shop",
                instance_id="lower-bound",
                sequence=1,
                deltas=[pb.KeyDelta(key="shop.views.product", calls=7, lower_bound=True)],
            ),
            timeout=10,
        )
    rows = {line.split()[-1]: line.split()[0] for line in cli("fetch").out.splitlines()[1:]}
    assert (rows["shop.views.product"], rows["shop.cart.Cart.add"]) == ("≥7", "20")
    data = json.loads(cli("fetch", "--format", "json").out)
    lower = {f["key"]: f["lower_bound"] for f in data["functions"]}
    assert (lower["shop.views.product"], lower["shop.cart.Cart.add"]) == (True, False)
