"""The web server's heatmap copies: shared by the pages, re-read at most once per gap, never missing the last change."""

from __future__ import annotations

import threading
import time

import pytest

from coldmod_cli.web.snapshots import MIN_GAP_S, Snapshots

pytestmark = pytest.mark.timeout(30)


class Store:
    """A heatmap source that counts its reads; ``gate`` holds a read until set."""

    def __init__(self) -> None:
        self.version = 0
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()
        self.notified: list[tuple[str, float]] = []

    def read(self, app: str) -> bytes:
        """What the page would get: the version the read saw."""
        self.gate.wait(10)
        self.reads += 1
        return f"{app}:{self.version}".encode()

    def notify(self, app: str) -> None:
        """The pages are told to fetch again."""
        self.notified.append((app, time.monotonic()))


def test_a_copy_is_shared_until_the_app_changes() -> None:
    store = Store()
    snapshots = Snapshots(store.read, store.notify)
    assert snapshots.get("a") == b"a:0"
    assert snapshots.get("a") == b"a:0"
    assert store.reads == 1
    store.version = 1
    snapshots.changed("a", whole=True)  # a register: the copy goes at once
    assert snapshots.get("a") == b"a:1"
    assert store.reads == 2
    snapshots.close()


def test_reports_are_read_at_most_once_per_gap_and_the_last_one_is_not_missed() -> None:
    store = Store()
    snapshots = Snapshots(store.read, store.notify)
    snapshots.get("a")
    changed = time.monotonic()
    for version in range(1, 20):  # a burst of reports
        store.version = version
        snapshots.changed("a", whole=False)
        assert snapshots.get("a") == b"a:0"  # within the gap: the copy the pages have
    assert store.reads == 1
    deadline = time.monotonic() + 5
    while not store.notified and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.notified, "the pages were never told to fetch the rest"
    assert store.notified[0][1] - changed >= MIN_GAP_S * 0.9
    assert snapshots.get("a") == b"a:19"  # the gap has passed: the last change is read
    assert store.reads == 2
    assert len(store.notified) == 1
    snapshots.close()


def test_pages_asking_together_share_one_read() -> None:
    store = Store()
    store.gate.clear()
    snapshots = Snapshots(store.read, store.notify)
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(snapshots.get("a"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    store.gate.set()
    for thread in threads:
        thread.join(10)
    assert answers == [b"a:0"] * 8
    assert store.reads == 1
    snapshots.close()


def test_a_failed_read_keeps_nothing_and_apps_are_bounded() -> None:
    from coldmod_cli.web import snapshots as module

    store = Store()
    calls = {"n": 0}

    def flaky(app: str) -> bytes:
        calls["n"] += 1
        if app == "gone":
            raise LookupError(app)
        return store.read(app)

    snapshots = Snapshots(flaky, store.notify)
    with pytest.raises(LookupError):
        snapshots.get("gone")
    with pytest.raises(LookupError):
        snapshots.get("gone")
    for i in range(module.KEPT + 3):
        snapshots.get(f"app{i}")
    assert len(snapshots._copies) == module.KEPT
    snapshots.close()
