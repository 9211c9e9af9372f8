"""The tracer's side of versions and history (issue 17).

Register carries the deployment's label (``COLDMOD_VERSION``) and the
rootmarker's ``[ignore]`` rules; every batch carries the Register's
fingerprint; no batch window spans a UTC midnight of the sender's clock
(driven here by an injected clock, never by waiting for a midnight).
"""

from __future__ import annotations

import pytest
from conftest import clean_env, make_app, run_py
from tls_fixtures import TlsCollector, tls_collector  # noqa: F401 - a fixture

from coldmod_trace import config
from coldmod_trace._internal.pending import DAY_MS, Pending
from coldmod_trace._internal.sender import Sender, SenderConfig
from coldmod_trace.rootmarker import load

pytestmark = pytest.mark.timeout(120)

MIDNIGHT = 20_000 * DAY_MS  # a UTC midnight (day 20,000 begins)


def test_a_window_open_at_midnight_is_sealed_at_the_day_it_began():
    pending = Pending()
    pending.add([("app.f", 3, False, False)], MIDNIGHT - 100)
    pending.add([("app.f", 2, False, False)], MIDNIGHT + 50)  # the drain at the midnight wake: the day that ends
    pending.add([("app.g", 1, False, False)], MIDNIGHT + 9_000)
    pending.seal(MIDNIGHT + 10_000)
    first = pending.oldest()
    assert first is not None
    assert (first.window_start_ms, first.window_end_ms) == (MIDNIGHT - 100, MIDNIGHT - 1)
    assert first.deltas == {"app.f": [5, False, False]}
    pending.delivered(first)
    second = pending.oldest()
    assert second is not None
    assert (second.sequence, second.window_start_ms, second.window_end_ms) == (2, MIDNIGHT + 9_000, MIDNIGHT + 10_000)
    for batch in (first, second):
        assert batch.window_start_ms // DAY_MS == batch.window_end_ms // DAY_MS  # one UTC day each


def test_sealing_never_ends_a_window_past_its_day():
    pending = Pending()
    pending.add([("app.f", 1, False, False)], MIDNIGHT - 5)
    pending.seal(MIDNIGHT + 3 * DAY_MS)  # a process stopped over days, sealed late
    batch = pending.oldest()
    assert batch is not None
    assert (batch.window_start_ms, batch.window_end_ms) == (MIDNIGHT - 5, MIDNIGHT - 1)


def test_a_refused_batch_is_dropped_once_and_counted():
    pending = Pending()
    pending.add([("app.f", 1, False, False), ("app.g", 1, False, False)], MIDNIGHT)
    pending.seal(MIDNIGHT + 1)
    batch = pending.oldest()
    assert batch is not None
    assert pending.refused(batch) == 2
    assert pending.refused(batch) == 0  # once
    pending.seal(MIDNIGHT + 2)
    told = pending.oldest()
    assert told is not None
    assert (told.sequence, told.deltas, told.dropped) == (2, {}, 2)  # the next batch says so


def test_pending_is_bounded_across_sealed_batches():
    pending = Pending(limit=3)
    pending.add([(f"app.f{i}", 1, False, False) for i in range(2)], MIDNIGHT)
    pending.seal(MIDNIGHT + 1)
    pending.add([(f"app.g{i}", 1, False, False) for i in range(3)], MIDNIGHT + 2)
    assert pending.status() == {"pending": 1, "inflight": 2, "dropped": 2, "sequence": 1}


class _Engine:
    """Hands the sender what the test counted."""

    name = "test"

    def __init__(self) -> None:
        self.counted: list[tuple[str, int, bool, bool]] = []

    def drain(self) -> list[tuple[str, int, bool, bool]]:
        counted, self.counted = self.counted, []
        return counted

    def forget(self, code: object) -> None:
        pass


class _Keys:
    def key(self, code: str) -> str:
        return code


def test_the_sender_closes_its_window_at_each_utc_midnight_of_its_clock(tmp_path):
    clock = [MIDNIGHT - 2_000]
    engine = _Engine()
    make_app(tmp_path, {})
    cfg = SenderConfig("app", load(tmp_path), config.ClientConfig("127.0.0.1:1", True, None, None), 10.0, "exact", "t")
    sender = Sender(cfg, engine, _Keys(), sources={"app.f": None}, wall_ms=lambda: clock[0])  # type: ignore[arg-type,dict-item]
    engine.counted = [("app.f", 4, False, False)]
    sender._collect()  # a flush before midnight
    clock[0] = MIDNIGHT + 20  # the midnight wake
    engine.counted = [("app.f", 1, False, False)]
    sender._collect()
    clock[0] = MIDNIGHT + 5_000
    engine.counted = [("app.f", 7, False, False)]
    sender._collect()
    pending = sender._pending
    yesterday = pending.oldest()
    assert yesterday is not None
    assert (yesterday.window_start_ms, yesterday.window_end_ms, yesterday.deltas["app.f"][0]) == (
        MIDNIGHT - 2_000, MIDNIGHT - 1, 5
    )  # fmt: skip
    pending.delivered(yesterday)
    pending.seal(clock[0])
    today = pending.oldest()
    assert today is not None
    assert today.window_start_ms // DAY_MS == MIDNIGHT // DAY_MS
    assert today.deltas["app.f"][0] == 7


@pytest.mark.parametrize(
    ("value", "label"),
    [("", ""), ("  v1.4.2 ", "v1.4.2"), ("a" * 128, "a" * 128), ("3f2c9e1 (main)", "3f2c9e1 (main)")],
)
def test_version_labels(value: str, label: str):
    assert config.deployment_version(env={config.COLDMOD_VERSION: value}) == label


@pytest.mark.parametrize("value", ["a" * 129, "v1\nv2", "tab\there"])
def test_an_invalid_version_label_names_the_variable(value: str):
    with pytest.raises(config.ConfigError, match=r"^COLDMOD_VERSION=.* is not a version label; use at most 128"):
        config.deployment_version(env={config.COLDMOD_VERSION: value})


APP = """
import coldmod_trace

coldmod_trace.start(mode="exact", flush_interval=3600)


def hit():
    pass


def ignored():
    pass


hit()
"""

MARKER = """
[ignore]
keys = ["app.ignored", "app.also_ignored"]
files = ["**/generated/**"]
"""


def test_register_carries_label_and_ignore_rules_and_batches_the_fingerprint(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": APP}, marker=MARKER)
    done = run_py(root, ["app.py"], env=clean_env(**tls_collector.env, COLDMOD_VERSION="release-7"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    recorder = tls_collector.recorder
    [probe, *_] = recorder.register_calls
    assert probe.version == "release-7"
    assert list(probe.ignore_keys) == ["app.also_ignored", "app.ignored"]
    assert list(probe.ignore_files) == ["**/generated/**"]
    assert all(r.version == "release-7" and r.fingerprint == probe.fingerprint for r in recorder.register_calls)
    [report] = recorder.reports.values()
    assert report.fingerprint == probe.fingerprint != ""
    assert recorder.totals() == {"app.hit": 1}


def test_an_invalid_label_is_one_sentence_and_tracing_goes_on(tmp_path, tls_collector: TlsCollector):
    root = make_app(tmp_path / "app", {"app.py": APP})
    done = run_py(root, ["app.py"], env=clean_env(**tls_collector.env, COLDMOD_VERSION="x" * 200))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "COLDMOD_VERSION=" in done.stderr
    assert "tracing goes on without a version label" in done.stderr
    assert all(r.version == "" for r in tls_collector.recorder.register_calls)
    assert tls_collector.recorder.totals() == {"app.hit": 1}
