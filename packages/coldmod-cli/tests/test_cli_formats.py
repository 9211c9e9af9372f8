"""`coldmod cold` as a CI gate: --check's exit code, PATH limits, markdown and SARIF 2.1.0 (real collector)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import COLD, HOT, git, traced

pytestmark = pytest.mark.timeout(120)

#: Every function but one is called: the cold list holds only shop.views.coupon.
ALL_BUT_COUPON = dict(HOT, **{key: 1 for key in COLD if key != "shop.views.coupon"})
EVERYTHING = dict(HOT, **{key: 1 for key in COLD})


def test_check_exits_1_when_something_is_cold_and_0_when_nothing_is(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    listed = cli("cold", "--check")
    assert listed.code == 1, listed.err
    assert len(listed.out.splitlines()) == 1 + len(COLD)
    assert "Traceback" not in listed.err

    traced(insecure_env.address, shop, {key: 1 for key in COLD})
    clean = cli("cold", "--check")
    assert clean.code == 0, clean.err
    assert clean.out == ""
    assert "0 of 20 tracked functions are cold" in clean.err


def test_without_check_cold_functions_exit_0(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    assert cli("cold").code == 0


def test_paths_limit_the_list_to_files_under_them(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    cart = cli("cold", "shop/cart.py", "--format", "json")
    assert cart.code == 0, cart.err
    keys = [row["key"] for row in json.loads(cart.out)["cold"]]
    assert keys == ["shop.cart.Cart.apply_coupon", "shop.cart.Cart.merge"]
    assert json.loads(cart.out)["summary"]["tracked_functions"] == 6  # only cart.py's functions

    both = cli("cold", "shop/views.py", "shop/catalog.py", "--check")
    assert both.code == 1
    assert {line.split()[-1] for line in both.out.splitlines()[1:]} == {
        "shop.views.coupon",
        "shop.catalog.import_legacy_csv",
        "shop.catalog.format_price_in_dollars",
    }


def test_a_path_is_relative_to_the_working_directory(cli, shop, insecure_env, monkeypatch):
    traced(insecure_env.address, shop, HOT)
    monkeypatch.chdir(shop / "shop")
    result = cli("cold", "views.py", "--format", "json")
    assert [row["key"] for row in json.loads(result.out)["cold"]] == ["shop.views.coupon"]
    assert len(json.loads(cli("cold", ".", "--format", "json").out)["cold"]) == len(COLD)


def test_a_missing_path_or_one_outside_the_root_is_one_sentence_and_exit_2(cli, shop, insecure_env, tmp_path):
    traced(insecure_env.address, shop, HOT)
    missing = cli("cold", "shop/nope.py")
    assert (missing.code, missing.out) == (2, "")
    assert missing.err.strip() == "coldmod: shop/nope.py: no such file or directory"

    outside = cli("cold", str(tmp_path))
    assert (outside.code, outside.out) == (2, "")
    assert "is outside the root" in outside.err
    assert len(outside.err.splitlines()) == 1


def test_cold_says_how_long_the_app_has_been_tracked(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    result = cli("cold")
    assert re.search(r"'demo-shop' has been tracked for \d+s \(since \d{4}-\d\d-\d\dT", result.err)
    summary = json.loads(cli("cold", "--format", "json").out)["summary"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", summary["tracked_since"])


def test_markdown_is_a_pull_request_comment(cli, shop, insecure_env):
    views = shop / "shop" / "views.py"
    views.write_text(views.read_text() + "\n\ndef outer():\n    def inner():\n        pass\n    return inner\n")
    git(shop, "commit", "-qam", "nested")
    traced(insecure_env.address, shop, dict(HOT, **{"shop.views.outer": 1}))

    result = cli("cold", "--format", "markdown")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "### Coldmod: 6 cold functions in `demo-shop`"
    assert "6 of 22 tracked functions are cold" in lines[2]
    assert "has been tracked for" in lines[2]
    assert lines[4] == "| Function | Location | Calls | Last call | Tracked since |"
    assert lines[5] == "|---|---|---|---|---|"
    rows = [line for line in lines[6:] if line.startswith("| ")]
    assert len(rows) == 6
    # `<locals>` stays text inside code, not an HTML tag a renderer would eat
    assert any(row.startswith("| `shop.views.outer.<locals>.inner` | `shop/views.py:") for row in rows)
    assert "| `shop.views.coupon` | `shop/views.py:" in result.out
    assert "| 0 | never |" in result.out


def sarif_of(cli, *args: str) -> dict:
    result = cli("cold", "--format", "sarif", *args)
    assert result.code in (0, 1), result.err
    return json.loads(result.out)


def test_sarif_has_what_the_2_1_0_schema_requires_and_code_scanning_reads(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)

    log = sarif_of(cli)

    # sarifLog: version and runs required; $schema names the OASIS schema
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-schema-2.1.0.json")
    [run] = log["runs"]
    driver = run["tool"]["driver"]  # run.tool and tool.driver required; driver.name required
    assert driver["name"] == "coldmod"
    assert driver["informationUri"].startswith("https://")
    assert [rule["id"] for rule in driver["rules"]] == ["cold"]
    assert driver["rules"][0]["shortDescription"]["text"]
    assert driver["rules"][0]["fullDescription"]["text"]
    results = run["results"]
    assert len(results) == len(COLD)
    by_key = {r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]: r for r in results}
    assert sorted(by_key) == sorted(COLD)
    coupon = by_key["shop.views.coupon"]
    assert (coupon["ruleId"], coupon["ruleIndex"]) == ("cold", 0)
    assert coupon["level"] in ("none", "note", "warning", "error")
    text = coupon["message"]["text"]  # result.message required, with text
    assert text.startswith("shop.views.coupon is cold")
    assert "0 calls, never called, tracked since 20" in text
    physical = coupon["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "shop/views.py", "uriBaseId": "%SRCROOT%"}
    source = (shop / "shop" / "views.py").read_text().splitlines()
    assert source[physical["region"]["startLine"] - 1].startswith("def coupon(")  # the def line, 1-based
    assert coupon["partialFingerprints"] == {"coldmodKey/v1": "shop.views.coupon"}
    assert "%SRCROOT%" in run["originalUriBaseIds"]


def test_sarif_uris_are_relative_to_the_repository_root_not_the_rootmarker(cli, tmp_path, insecure_env, monkeypatch):
    import shutil

    from conftest import DEMO_APP

    repo = tmp_path / "monorepo"
    app = repo / "services" / "shop"
    shutil.copytree(DEMO_APP, app, ignore=shutil.ignore_patterns("__pycache__", ".coldmod-cache"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "x")
    monkeypatch.chdir(app)
    traced(insecure_env.address, app, HOT)

    results = sarif_of(cli)["runs"][0]["results"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}

    assert uris == {"services/shop/shop/cart.py", "services/shop/shop/catalog.py", "services/shop/shop/views.py"}


def test_sarif_with_nothing_cold_is_a_valid_empty_run(cli, shop, insecure_env):
    traced(insecure_env.address, shop, EVERYTHING)
    log = sarif_of(cli, "--check")
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["tool"]["driver"]["rules"] == []


def test_sarif_rules_per_verdict_when_verdicts_are_known(shop):
    from pathlib import Path

    from coldmod_cli import formats, heatmap

    rows = [
        heatmap.Row("a.f", "a.py", 3, tracked=True, tracked_since_ms=1_000),
        heatmap.Row("a.g", "a.py", 9, tracked=True, tracked_since_ms=1_000, calls=4, last_seen_ms=5_000),
    ]
    log = formats.sarif(rows, root=Path(shop), now=90_000_000, verdicts={"a.f": "safe", "a.g": "review"})
    run = log["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["safe", "review"]
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in run["results"]] == [
        ("safe", 0, "warning"),
        ("review", 1, "note"),
    ]
    assert "4 calls, last called 1970-01-01T00:00:05.000Z, tracked since 1970-01-01T00:00:01.000Z (1.0d)" in (
        run["results"][1]["message"]["text"]
    )


def test_format_refuses_an_unknown_value(cli, shop, insecure_env):
    result = cli("cold", "--format", "xml")
    assert result.code == 2
    assert "--format must be text or json or markdown or sarif" in result.err
