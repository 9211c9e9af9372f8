"""The LibCST side of a file that is edited: its module, and the nodes that ``ast`` found.

References are found with ``ast`` (see ``_references``); edits are made with
LibCST on the same file. Both parsers see the same statements in the same
order, so the LibCST node of each statement, import alias and ``__all__``
entry is found by walking the two trees side by side, which costs far less
than LibCST's position metadata (a full code generation per file).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import libcst as cst

__all__ = ["CstFile", "parse_cst"]


@dataclass(eq=False)
class CstFile:
    """A file parsed with LibCST, with the LibCST node of each ``ast`` node edits need."""

    path: str
    source: bytes
    module: cst.Module
    nodes: dict[int, cst.CSTNode] = field(default_factory=dict)  # id(ast node) -> LibCST node
    statements: dict[int, cst.CSTNode] = field(default_factory=dict)  # first line -> statement
    defs: dict[int, cst.FunctionDef] = field(default_factory=dict)  # line of `def`/`async` -> node
    parents: dict[int, tuple[int, ...]] = field(default_factory=dict)  # id(LibCST stmt) -> ids of ancestors

    def lineage(self, node: cst.CSTNode) -> tuple[int, ...]:
        """The ids of the statements that contain ``node`` (itself included, when it is one)."""
        return (id(node), *self.parents.get(id(node), ()))


# (the statement or small statement, the statement that owns its line and leading comments, ancestors)
_Flat = tuple[cst.CSTNode, cst.CSTNode, tuple[int, ...]]


def _cst_flat(body: Sequence[cst.BaseStatement], ancestors: tuple[int, ...], out: list[_Flat]) -> None:
    for stmt in body:
        if isinstance(stmt, cst.SimpleStatementLine):
            out.extend((small, stmt, (id(stmt), *ancestors)) for small in stmt.body)
            continue
        out.append((stmt, stmt, ancestors))
        inner = (id(stmt), *ancestors)
        for suite in _suites(stmt):
            if isinstance(suite, cst.If):  # `elif`: a statement of its own, as in ast
                _cst_flat([suite], inner, out)
            elif isinstance(suite, cst.SimpleStatementSuite):
                out.extend((small, stmt, inner) for small in suite.body)
            else:
                _cst_flat(suite.body, inner, out)  # type: ignore[arg-type]  # an IndentedBlock's body


def _suites(stmt: cst.BaseStatement) -> Iterator[cst.BaseSuite | cst.If]:
    """The blocks of a compound statement in source order (``ast``'s field order)."""
    if isinstance(stmt, (cst.Try, cst.TryStar)):
        yield stmt.body
        for handler in stmt.handlers:
            yield handler.body
        if stmt.orelse is not None:
            yield stmt.orelse.body
        if stmt.finalbody is not None:
            yield stmt.finalbody.body
    elif isinstance(stmt, cst.Match):
        for case in stmt.cases:
            yield case.body
    elif isinstance(stmt, (cst.If, cst.For, cst.While)):
        yield stmt.body
        orelse = stmt.orelse
        if isinstance(orelse, cst.If):
            yield orelse
        elif orelse is not None:
            yield orelse.body
    elif isinstance(stmt, (cst.FunctionDef, cst.ClassDef, cst.With)):
        yield stmt.body


def _ast_flat(body: list[ast.stmt], out: list[ast.stmt]) -> None:
    for stmt in body:
        out.append(stmt)
        for name in stmt._fields:
            value = getattr(stmt, name)
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                _ast_flat(value, out)
            elif isinstance(value, list) and value and isinstance(value[0], (ast.ExceptHandler, ast.match_case)):
                for part in value:
                    _ast_flat(part.body, out)


_RENAMED = {"Delete": "Del"}  # ast's name -> LibCST's; the others match, less an "Async" prefix


def _same_kind(a: ast.stmt, c: cst.CSTNode) -> bool:
    name = type(a).__name__.removeprefix("Async")
    return _RENAMED.get(name, name) == type(c).__name__


def parse_cst(
    path: str, source: bytes, tree: ast.Module, module: cst.Module | None = None
) -> CstFile | tuple[int, str]:
    """The file parsed with LibCST (unless ``module`` is given) and paired with ``tree``.

    Returns ``(line, reason)`` when LibCST cannot parse it or the two trees disagree.
    """
    try:
        module = module or cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        return exc.raw_line, f"syntax error ({exc.message})"
    except (UnicodeDecodeError, LookupError, ValueError, RecursionError) as exc:
        return 1, f"cannot parse the file ({exc})"
    try:
        printed = module.bytes
    except (UnicodeEncodeError, LookupError, ValueError, RecursionError):
        printed = b""
    if printed != source:
        # An edit prints the whole module back: any byte LibCST would not
        # reproduce (CR-only newlines, form feeds) would be lost with it.
        return _first_difference(source, printed), (
            "LibCST does not print this file back byte for byte (CR-only newlines or form feeds?); "
            "refusing to edit it"
        )
    cst_flat: list[_Flat] = []
    _cst_flat(module.body, (), cst_flat)
    ast_flat: list[ast.stmt] = []
    _ast_flat(tree.body, ast_flat)
    if len(ast_flat) != len(cst_flat):
        return 1, "LibCST and ast see different statements"
    parsed = CstFile(path, source, module)
    for a, (c, owner, ancestors) in zip(ast_flat, cst_flat, strict=True):
        if not _same_kind(a, c):
            return a.lineno, f"LibCST and ast see different statements ({type(a).__name__})"
        parsed.nodes[id(a)] = c
        parsed.statements.setdefault(a.lineno, owner)
        if isinstance(c, cst.FunctionDef):
            parsed.defs[a.lineno] = c
        parsed.parents[id(c)] = ancestors
        if owner is not c:
            parsed.parents[id(owner)] = ancestors[1:] if ancestors and ancestors[0] == id(owner) else ancestors
        _pair_parts(a, c, parsed)
    return parsed


def _first_difference(old: bytes, new: bytes) -> int:
    """The line of the first byte where ``new`` differs from ``old``."""
    limit = min(len(old), len(new))
    at = next((i for i in range(limit) if old[i] != new[i]), limit)
    return old.count(b"\n", 0, at) + old.count(b"\r", 0, at) - old.count(b"\r\n", 0, at) + 1


def _pair_parts(a: ast.stmt, c: cst.CSTNode, parsed: CstFile) -> None:
    """Import aliases and list/tuple entries, the parts of a statement that edits remove."""
    aliases: list[tuple[ast.alias, cst.CSTNode]] = []
    star = isinstance(c, cst.ImportFrom) and isinstance(c.names, cst.ImportStar)
    if isinstance(a, (ast.ImportFrom, ast.Import)) and isinstance(c, (cst.ImportFrom, cst.Import)) and not star:
        aliases = list(zip(a.names, c.names, strict=False))  # type: ignore[arg-type]  # not a star: a sequence
    for alias, node in aliases:
        parsed.nodes[id(alias)] = node
        parsed.parents[id(node)] = parsed.lineage(c)
    value_a = getattr(a, "value", None)
    value_c = getattr(c, "value", None)
    if isinstance(value_a, (ast.List, ast.Tuple)) and isinstance(value_c, (cst.List, cst.Tuple)):
        for element_a, element_c in zip(value_a.elts, value_c.elements, strict=False):
            parsed.nodes[id(element_a)] = element_c
            parsed.parents[id(element_c)] = parsed.lineage(c)
