"""Snapshots: `fetch --save FILE` from a real collector, then `cold`/`rm --from FILE` with no collector at all."""

from __future__ import annotations

import json
import os

import pytest
from conftest import COLD, HOT, traced

from coldmod_cli import snapshot

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def saved(cli, shop, insecure_env, tmp_path):
    """A snapshot of the shop's heatmap, then the collector stopped and every COLDMOD_ variable gone."""
    traced(insecure_env.address, shop, HOT)
    path = tmp_path / "heatmap.json"
    result = cli("fetch", "--save", str(path))
    assert result.code == 0, result.err
    assert result.out == ""
    assert f"saved the heatmap of 'demo-shop' (20 functions) to {path}" in result.err
    insecure_env.stop()
    for name in list(os.environ):
        if name.startswith("COLDMOD_"):
            os.environ.pop(name)  # monkeypatch (insecure_env) restores them
    return path


def test_the_file_is_the_documented_versioned_wrapper(saved):
    document = json.loads(saved.read_text())
    assert (document["format"], document["version"], document["app"]) == ("coldmod-heatmap", 1, "demo-shop")
    assert document["saved"].endswith("Z")
    fetch = document["fetch"]
    assert fetch["app"] == "demo-shop"
    assert len(fetch["entries"]) == 20
    assert int(fetch["registered_ms"]) > 0  # protobuf's JSON mapping: 64-bit numbers as strings
    assert not [p for p in saved.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no temporary left


def test_cold_from_a_snapshot_needs_no_collector_and_no_credentials(cli, saved):
    assert cli("cold").code == 1  # no collector configured: the live path fails

    result = cli("cold", "--from", str(saved), "--format", "json")

    assert result.code == 0, result.err
    assert sorted(row["key"] for row in json.loads(result.out)["cold"]) == sorted(COLD)
    assert cli("cold", "--from", str(saved), "--check").code == 1


def test_rm_cold_from_a_snapshot(cli, saved):
    result = cli("rm", "--cold", "--from", str(saved), "--dry-run", "--min-tracked", "0s")
    assert result.code == 0, result.err
    assert "shop.views.coupon" in result.out
    assert "would remove" in result.err
    only_with_cold = cli("rm", "shop.views.coupon", "--from", str(saved))
    assert only_with_cold.code == 2
    assert "--from only applies with --cold" in only_with_cold.err


def test_fields_newer_than_the_reader_are_carried_and_ignored(cli, saved):
    # What a newer collector adds to FetchResponse reaches the file without this code knowing it;
    # an older reader skips what it does not know.
    document = json.loads(saved.read_text())
    document["fetch"]["a_future_field"] = 7
    document["fetch"]["entries"][0]["another_future_field"] = {"x": 1}
    saved.write_text(json.dumps(document))
    result = cli("cold", "--from", str(saved), "--format", "json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)["cold"]) == len(COLD)


def test_every_fetch_response_field_round_trips():
    from coldmod_proto.v1 import coldmod_pb2 as pb

    response = pb.FetchResponse(app="a", registered_ms=5, dropped_unknown=2, dropped_updates=3, now_ms=9)
    entry = response.entries.add(key="a.f", calls=4, estimated=True, first_seen_ms=1, last_seen_ms=2)
    entry.tracked_since_ms = 1
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = snapshot.write(os.path.join(directory, "s.json"), "a", response)
        assert snapshot.read(path, "a") == response


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the snapshot"),
        ("not json {", "is not a coldmod heatmap snapshot; write one with `coldmod fetch --save"),
        ('{"format": "sarif", "version": 1}', "is not a coldmod heatmap snapshot"),
        ("[1, 2]", "is not a coldmod heatmap snapshot"),
        ('{"format": "coldmod-heatmap", "version": 2, "app": "demo-shop", "fetch": {}}',
         "was saved by a newer coldmod (snapshot version 2; this one reads up to 1); upgrade coldmod-cli"),
        ('{"format": "coldmod-heatmap", "version": "1", "app": "demo-shop", "fetch": {}}', "is a damaged snapshot"),
        ('{"format": "coldmod-heatmap", "version": 1, "app": "other", "fetch": {}}',
         "is a snapshot of the app 'other', but this checkout is the app 'demo-shop'"),
        ('{"format": "coldmod-heatmap", "version": 1, "app": "demo-shop", "fetch": {"entries": 5}}',
         "is a damaged snapshot"),
        ('{"format": "coldmod-heatmap", "version": 1, "app": "demo-shop", "fetch": []}', "is a damaged snapshot"),
    ],
)
def test_a_bad_snapshot_is_one_sentence_and_exit_2(cli, shop, tmp_path, content, message):
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_text(content)
    before = (shop / "shop" / "views.py").read_text()

    for argv in (["cold", "--from", str(path)], ["rm", "--cold", "--from", str(path), "--min-tracked", "0s"]):
        result = cli(*argv)
        assert result.code == 2, (argv, result.err)
        assert message in result.err
        assert len(result.err.strip().splitlines()) == 1
        assert "Traceback" not in result.err
    assert (shop / "shop" / "views.py").read_text() == before


def test_save_into_a_missing_directory_is_one_sentence(cli, shop, insecure_env, tmp_path):
    traced(insecure_env.address, shop, HOT)
    result = cli("fetch", "--save", str(tmp_path / "nope" / "s.json"))
    assert result.code == 2
    assert "does not exist" in result.err
