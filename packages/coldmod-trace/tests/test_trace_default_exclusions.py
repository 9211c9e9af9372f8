"""Test code is never traced: the rootmarker's default exclusions apply whatever the file says."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldmod_trace import MARKER, discover
from coldmod_trace.rootmarker import DEFAULT_IGNORE_FILES, is_test_file, load

TEST_FILES = [
    "tests/test_app.py",
    "pkg/tests/helpers.py",
    "test_top.py",
    "pkg/test_views.py",
    "pkg/views_test.py",
    "polls/tests.py",
    "conftest.py",
    "pkg/sub/conftest.py",
]
APP_FILES = ["pkg/views.py", "pkg/testing_utils.py", "pkg/contest.py", "pkg/tests_data.py", "pkg/latest.py"]


@pytest.mark.parametrize("relpath", TEST_FILES)
def test_test_files_are_test_code(relpath: str) -> None:
    assert is_test_file(relpath)


@pytest.mark.parametrize("relpath", APP_FILES)
def test_application_files_are_not(relpath: str) -> None:
    assert not is_test_file(relpath)


def test_discovery_leaves_tests_out_with_an_empty_rootmarker(tmp_path: Path) -> None:
    for relpath in TEST_FILES + APP_FILES:
        path = tmp_path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def f_{path.stem}():\n    pass\n")
    (tmp_path / MARKER).write_text("")

    found = discover(tmp_path, cache=False)

    assert sorted(found.files) == sorted(APP_FILES)


def test_the_user_ignores_add_to_the_defaults(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text('[ignore]\nfiles = ["gen/**"]\n')
    ignored = load(tmp_path).file_filter()
    assert ignored("gen/x.py")
    assert ignored("tests/x.py")
    assert not ignored("app.py")
    assert ignored.patterns[: len(DEFAULT_IGNORE_FILES)] == tuple(glob for glob, _ in DEFAULT_IGNORE_FILES)
