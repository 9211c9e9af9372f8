"""LibCST codemod commands, for teams that already run codemods with ``libcst.tool``.

    python -m libcst.tool codemod -x coldmod_codemod.commands.RemoveFunction --no-format \\
        --key shop.views.old_view --key shop.utils.legacy --root . shop/

(``-x`` names the command by its import path; ``--no-format`` keeps every
byte the command does not change, instead of running black over the file.)

``libcst.tool`` runs a command on one file at a time, so the command cannot
know whether another file still uses a function: in each file it removes the
definitions of the keys, the imports of them and their ``__all__`` entries, and
puts a TODO comment above every statement of that file still referring to one
(what ``plan_removal(..., force=True)`` does for the whole tree). Use
``coldmod rm`` or :func:`coldmod_codemod.plan_removal` for verdicts first.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext, SkipFile

from coldmod_codemod._plan import changes
from coldmod_codemod._references import Tree, collect, locate, match

__all__ = ["RemoveFunction"]


class RemoveFunction(CodemodCommand):
    """Remove functions by key, with their imports and ``__all__`` entries; mark remaining uses."""

    DESCRIPTION = (
        "Remove functions by coldmod key (<module>.<qualname>), their imports and __all__ entries; "
        "put a TODO comment above each statement still referring to one."
    )

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        """``--key`` (repeatable) and ``--root``."""
        arg_parser.add_argument(
            "--key", dest="keys", action="append", required=True,
            help="the key of a function to remove, <module>.<qualname>; repeat for several",
        )
        arg_parser.add_argument(
            "--root", dest="root", default=None,
            help="the directory that holds coldmod.rootmarker, which module names are relative to "
                 "(default: the module name libcst.tool computes from its repo_root)",
        )

    def __init__(self, context: CodemodContext, keys: Sequence[str], root: str | None = None) -> None:
        super().__init__(context)
        self.keys = list(keys)
        self.root = root

    def _relpath(self) -> str | None:
        """The file's path relative to the root, which its keys' module is computed from."""
        filename = self.context.filename
        if self.root is not None and filename is not None:
            return os.path.relpath(os.path.abspath(filename), os.path.abspath(self.root)).replace(os.sep, "/")
        module = self.context.full_module_name
        if module is None:
            return None
        last = "/__init__.py" if filename is not None and os.path.basename(filename) == "__init__.py" else ".py"
        return module.replace(".", "/") + last

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        """Remove the keys' definitions and references in this one module."""
        relpath = self._relpath()
        if relpath is None:
            raise SkipFile("no module name for this file: pass --root, or set repo_root for libcst.tool")
        names = {key.rpartition(".")[2] for key in self.keys}
        source = tree.bytes
        if not any(name.encode() in source for name in names):
            raise SkipFile("does not mention any of the keys' names")
        files = Tree(self.root or ".", files=())
        files.adopt(relpath, source, tree)
        targets = locate(files, self.keys)
        collect(files, targets)
        matches = {key: match(files, target) for key, target in targets.items()}
        # Keys defined in other files are removed there; here only their references go.
        removing = {key for key, target in targets.items() if target.definitions or matches[key]}
        per_file, bad, _ = changes(files, targets, matches, removing)
        for problem in bad.values():
            self.warn(problem)
        change = per_file.get(relpath)
        if change is None:
            raise SkipFile("nothing to remove")
        return tree.visit(change.transformer())
