"""apply: atomic writes that keep bytes, mode and encoding, and refuse stale plans."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from coldmod_codemod._apply import apply
from coldmod_codemod._plan import plan_removal

pytestmark = pytest.mark.timeout(60)

MOD = b"def cold():\r\n    pass\r\n\r\n\r\ndef hot():\r\n    pass\r\n"
USER = b"from m import cold, hot\r\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "coldmod.rootmarker").write_text("")
    (tmp_path / "m.py").write_bytes(MOD)
    (tmp_path / "user.py").write_bytes(USER)
    os.chmod(tmp_path / "m.py", 0o751)
    return tmp_path


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".coldmod-"))


def test_apply_writes_every_edit_keeping_newlines_and_mode(root: Path) -> None:
    result = apply(plan_removal(root, ["m.cold"]))
    assert result.ok, result.problems
    assert sorted(result.written) == ["m.py", "user.py"]
    assert (root / "m.py").read_bytes() == b"def hot():\r\n    pass\r\n"
    assert (root / "user.py").read_bytes() == b"from m import hot\r\n"
    assert stat.S_IMODE((root / "m.py").stat().st_mode) == 0o751
    assert leftovers(root) == []


def test_apply_keeps_a_pep263_encoding(tmp_path: Path) -> None:
    (tmp_path / "coldmod.rootmarker").write_text("")
    source = "# coding: cp1252\nSIGN = '€'\n\n\ndef cold():\n    pass\n"
    (tmp_path / "m.py").write_bytes(source.encode("cp1252"))
    assert apply(plan_removal(tmp_path, ["m.cold"])).ok
    assert (tmp_path / "m.py").read_bytes() == "# coding: cp1252\nSIGN = '€'\n".encode("cp1252")


def test_a_file_changed_since_the_plan_refuses_everything(root: Path) -> None:
    plan = plan_removal(root, ["m.cold"])
    (root / "user.py").write_bytes(USER + b"# edited\r\n")
    result = apply(plan)
    assert not result.ok
    assert result.problems == ("user.py changed since the plan was made; make a new plan. Nothing was written.",)
    assert (root / "m.py").read_bytes() == MOD
    assert leftovers(root) == []


def test_a_failing_rename_restores_the_files_already_replaced(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As root no permission makes a rename fail, so the fault is injected on the second rename.
    plan = plan_removal(root, ["m.cold"])
    real_replace = os.replace
    calls = []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(Path(dst).name)
        if Path(dst).name == "user.py" and Path(src).suffix == ".tmp":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    result = apply(plan)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not result.ok
    assert "every file was restored" in result.problems[0]
    assert (root / "m.py").read_bytes() == MOD
    assert (root / "user.py").read_bytes() == USER
    assert leftovers(root) == []


def test_a_file_that_cannot_be_written_changes_nothing(root: Path) -> None:
    sub = root / "sub"
    sub.mkdir()
    (sub / "user.py").write_bytes(USER)
    plan = plan_removal(root, ["m.cold"])
    assert sorted(e.path for e in plan.edits) == ["m.py", "sub/user.py", "user.py"]
    # An immutable directory refuses new files even to root; where chattr is
    # missing, the same failure is injected into the temporary file's creation.
    chattr = shutil.which("chattr")
    immutable = chattr is not None and subprocess.run([chattr, "+i", str(sub)], capture_output=True).returncode == 0
    try:
        if immutable:
            result = apply(plan)
        else:
            with pytest.MonkeyPatch.context() as mp:
                real = tempfile.mkstemp
                mp.setattr(tempfile, "mkstemp", lambda **kw: _refuse(sub, real, **kw))
                result = apply(plan)
    finally:
        if immutable:
            subprocess.run([chattr, "-i", str(sub)], check=True)
    assert not result.ok
    assert result.problems[0].startswith("sub/user.py: cannot write beside the file")
    assert (root / "m.py").read_bytes() == MOD
    assert (root / "user.py").read_bytes() == USER
    assert leftovers(root) == []
    assert leftovers(sub) == []


def _refuse(sub: Path, real, **kw):  # type: ignore[no-untyped-def]
    if Path(kw["dir"]) == sub:
        raise PermissionError(1, "Operation not permitted")
    return real(**kw)


def test_a_file_gone_since_the_plan_refuses_everything(root: Path) -> None:
    plan = plan_removal(root, ["m.cold"])
    (root / "user.py").unlink()
    result = apply(plan)
    assert not result.ok
    assert result.problems[0].startswith("user.py: cannot read the file")
    assert (root / "m.py").read_bytes() == MOD


def test_a_symlink_leading_outside_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "m.py").write_bytes(MOD)
    root = tmp_path / "root"
    root.mkdir()
    (root / "coldmod.rootmarker").write_text("")
    (root / "m.py").symlink_to(outside / "m.py")
    result = apply(plan_removal(root, ["m.cold"]))
    assert not result.ok
    assert "outside the root" in result.problems[0]
    assert (outside / "m.py").read_bytes() == MOD
