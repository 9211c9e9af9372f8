"""``apply``: write a plan all at once, or not at all.

Every new file is first written in full to a temporary file in its own
directory (so the rename cannot cross filesystems) with the old file's mode,
and each old file is hard-linked to a backup name. Only when every temporary
file exists and no file changed since the plan was made are they renamed over
the originals; if a rename fails, the ones already done are rolled back from
the backups. The remaining window: a crash (power loss, SIGKILL) between the
first and the last rename leaves some files new and some old, with the
``.coldmod-*.bak`` backups beside them.

Encoding and newlines need no work here: LibCST keeps them when it prints
the module, so the plan's bytes are already in the file's own style.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coldmod_codemod._plan import FileEdit, RemovalPlan

__all__ = ["ApplyResult", "apply"]


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did: ``ok`` with the written paths, or nothing written and why."""

    ok: bool
    written: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def __str__(self) -> str:
        """One line per problem, or how many files were written."""
        if self.ok:
            return f"wrote {len(self.written)} file(s)"
        return "\n".join(self.problems)


@dataclass
class _Pending:
    edit: FileEdit
    target: Path
    temp: Path | None = None
    backup: Path | None = None
    replaced: bool = False


def apply(plan: RemovalPlan) -> ApplyResult:
    """Write every edit of ``plan`` atomically; change nothing if any file cannot be written."""
    root = Path(os.path.realpath(plan.root))
    pending: list[_Pending] = []
    problems: list[str] = []
    for edit in plan.edits:
        target = Path(os.path.realpath(root / edit.path))
        if not target.is_relative_to(root):
            problems.append(f"{edit.path}: resolves outside the root ({target}); refusing to write there.")
            continue
        pending.append(_Pending(edit, target))
    problems += _changed(pending)
    if problems:
        return ApplyResult(False, problems=tuple(problems))
    try:
        for p in pending:
            problem = _prepare(p)
            if problem:
                return ApplyResult(False, problems=(problem,))
        # Checked again right before the renames: the window for an edit in
        # between is now only as long as the renames themselves.
        problems = _changed(pending)
        if problems:
            return ApplyResult(False, problems=tuple(problems))
        for p in pending:
            try:
                assert p.temp is not None
                os.replace(p.temp, p.target)
            except OSError as exc:
                failed = _rollback(pending)
                problem = f"{p.edit.path}: cannot replace the file ({exc.strerror or exc}); "
                if failed:
                    problem += f"could not restore {', '.join(failed)} (backups kept beside them)."
                else:
                    problem += "every file was restored."
                return ApplyResult(False, problems=(problem,))
            p.replaced, p.temp = True, None
        _fsync_dirs({p.target.parent for p in pending})
        return ApplyResult(True, written=tuple(p.edit.path for p in pending))
    finally:
        for p in pending:
            for leftover in (p.temp, p.backup):
                if leftover is not None:
                    with contextlib.suppress(OSError):
                        leftover.unlink()


def _changed(pending: list[_Pending]) -> list[str]:
    problems = []
    for p in pending:
        try:
            current = p.target.read_bytes()
        except OSError as exc:
            problems.append(f"{p.edit.path}: cannot read the file ({exc.strerror or exc}); nothing was written.")
            continue
        if hashlib.sha256(current).hexdigest() != p.edit.digest:
            problems.append(f"{p.edit.path} changed since the plan was made; make a new plan. Nothing was written.")
    return problems


def _prepare(p: _Pending) -> str | None:
    """Write the temporary file and the backup link; the problem, if any."""
    directory = p.target.parent
    try:
        info = p.target.stat()
        # Short names: the file's own name may already be near the length limit.
        fd, name = tempfile.mkstemp(dir=directory, prefix=".coldmod-", suffix=".tmp")
        p.temp = Path(name)
        with os.fdopen(fd, "wb") as out:
            out.write(p.edit.new)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(p.temp, stat.S_IMODE(info.st_mode))
        if hasattr(os, "chown") and (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            with contextlib.suppress(OSError):  # only possible with privileges; mode is what matters
                os.chown(p.temp, info.st_uid, info.st_gid)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".coldmod-", suffix=".bak")
        os.close(fd)
        p.backup = Path(name)
        try:  # a hard link costs nothing; a copy where links are not supported
            os.replace(_link_beside(p.target), p.backup)
        except OSError:
            shutil.copyfile(p.target, p.backup)
    except OSError as exc:
        return f"{p.edit.path}: cannot write beside the file ({exc.strerror or exc}); nothing was written."
    return None


def _link_beside(path: Path) -> Path:
    """A fresh hard link to ``path`` in its directory."""
    name = path.parent / f".coldmod-{os.getpid()}-{id(path)}.lnk"
    os.link(path, name)
    return name


def _rollback(pending: list[_Pending]) -> list[str]:
    """Put back every replaced file from its backup; the paths that could not be restored."""
    failed = []
    for p in pending:
        if p.replaced and p.backup is not None:
            try:
                os.replace(p.backup, p.target)
                p.backup = None
            except OSError:
                failed.append(p.edit.path)
                p.backup = None  # keep it: it is the only copy of the old content
    return failed


def _fsync_dirs(directories: set[Path]) -> None:
    """Make the renames durable where the platform allows it."""
    for directory in directories:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
