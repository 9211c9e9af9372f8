"""The LibCST transformer that removes definitions, imports and ``__all__`` entries.

It works on the very nodes the reference scan saw (matched by identity), so
what was found is exactly what is edited. Every other byte is kept: comments
that are not attached to a removed definition move to the next statement, and
a body left empty gets ``pass``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import libcst as cst

__all__ = ["RemovalTransformer", "todo_comment"]

_Item = TypeVar("_Item", cst.BaseElement, cst.ImportAlias)


def todo_comment(key: str) -> str:
    """The comment put above a statement that still refers to a removed function."""
    return f"# TODO: {key} was removed by coldmod."


class RemovalTransformer(cst.CSTTransformer):
    """Removes the given nodes (by identity) and adds TODO comments above the given statements."""

    def __init__(
        self,
        definitions: Iterable[cst.FunctionDef],
        removed: Iterable[cst.CSTNode],
        todos: Mapping[int, Sequence[str]] | None = None,
        *,
        only: set[int] | None = None,
    ) -> None:
        """``only``: ids of the statements that contain a change; others are not descended into."""
        super().__init__()
        self._only = only
        self._definitions = {id(n) for n in definitions}
        self._removed = {id(n) for n in removed}  # ImportAlias and list/tuple Element nodes
        self._todos = dict(todos or {})  # id(statement) -> keys
        self._dropped: set[int] = set()  # ids of original statements to leave out of their body

    def on_visit(self, node: cst.CSTNode) -> bool:
        # Visiting a whole module costs about as much as parsing it; statements
        # without a change are skipped (they are returned as they are).
        if self._only is not None and isinstance(node, cst.BaseStatement) and id(node) not in self._only:
            return False
        return super().on_visit(node)

    # A removed definition is not descended into, so the node in the updated
    # body is the original itself.
    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return id(node) not in self._definitions

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        result = super().on_leave(original_node, updated_node)
        if id(original_node) in self._definitions:
            self._dropped.add(id(original_node))
        keys = self._todos.get(id(original_node))
        if keys and isinstance(result, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            comments = [cst.EmptyLine(indent=True, comment=cst.Comment(todo_comment(k))) for k in keys]
            result = result.with_changes(leading_lines=[*result.leading_lines, *comments])
        return result  # type: ignore[return-value]

    # -- small statements: imports ---------------------------------------------

    def _small(
        self, original: Sequence[cst.BaseSmallStatement], updated: Sequence[cst.BaseSmallStatement]
    ) -> list[cst.BaseSmallStatement]:
        kept: list[cst.BaseSmallStatement] = []
        for orig, new in zip(original, updated, strict=True):
            if (
                isinstance(orig, cst.ImportFrom)
                and isinstance(new, cst.ImportFrom)
                and not isinstance(orig.names, cst.ImportStar)
            ) or (isinstance(orig, cst.Import) and isinstance(new, cst.Import)):
                rpar = getattr(new, "rpar", None)
                closing = rpar.whitespace_before if rpar is not None else None
                names, closing = _without(orig.names, new.names, self._removed, closing)  # type: ignore[arg-type]
                if not names:
                    continue
                if len(names) != len(orig.names):  # type: ignore[arg-type]
                    if rpar is None:  # `from m import a,` is invalid without parentheses
                        names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                        new = new.with_changes(names=names)
                    else:
                        new = new.with_changes(names=names, rpar=rpar.with_changes(whitespace_before=closing))
            kept.append(new)
        if kept and len(kept) != len(updated) and updated[-1] is not kept[-1]:
            kept[-1] = kept[-1].with_changes(semicolon=updated[-1].semicolon)
        return kept

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        kept = self._small(original_node.body, updated_node.body)
        if not kept:
            self._dropped.add(id(original_node))
            return updated_node
        return updated_node.with_changes(body=kept)

    def leave_SimpleStatementSuite(
        self, original_node: cst.SimpleStatementSuite, updated_node: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        kept = self._small(original_node.body, updated_node.body)
        return updated_node.with_changes(body=kept or [cst.Pass()])

    # -- __all__ entries -------------------------------------------------------

    def leave_List(self, original_node: cst.List, updated_node: cst.List) -> cst.List:
        elements, closing = _without(
            original_node.elements, updated_node.elements, self._removed, updated_node.rbracket.whitespace_before
        )
        if len(elements) == len(original_node.elements):
            return updated_node
        rbracket = updated_node.rbracket.with_changes(whitespace_before=closing)
        return updated_node.with_changes(elements=elements, rbracket=rbracket)

    def leave_Tuple(self, original_node: cst.Tuple, updated_node: cst.Tuple) -> cst.Tuple:
        rpar = list(updated_node.rpar)
        closing = rpar[0].whitespace_before if rpar else None
        elements, closing = _without(original_node.elements, updated_node.elements, self._removed, closing)
        if len(elements) == len(original_node.elements):
            return updated_node
        if rpar and closing is not None:
            updated_node = updated_node.with_changes(rpar=[rpar[0].with_changes(whitespace_before=closing), *rpar[1:]])
        if len(elements) == 1 and not isinstance(elements[0].comma, cst.Comma):
            elements[0] = elements[0].with_changes(comma=cst.Comma())  # ("a",) stays a tuple
        if not elements and not updated_node.lpar:
            return updated_node.with_changes(elements=[], lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return updated_node.with_changes(elements=elements)

    # -- bodies ------------------------------------------------------------------

    def _body(
        self, original: Sequence[cst.BaseStatement], updated: Sequence[cst.BaseStatement]
    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """The body without dropped statements, and the comment lines left over at its end."""
        body: list[cst.BaseStatement] = []
        pending: list[cst.EmptyLine] = []
        gap: list[cst.EmptyLine] = []  # the blank lines above the first statement of a dropped run
        dropped = run = False
        for orig, new in zip(original, updated, strict=True):
            assert isinstance(new, (cst.SimpleStatementLine, cst.BaseCompoundStatement))  # every statement has them
            if id(orig) in self._dropped:
                if not run:
                    gap = _blank_prefix(new.leading_lines)
                pending.extend(_detached(new.leading_lines, attached=isinstance(orig, cst.FunctionDef)))
                dropped = run = True
                continue
            if pending or (dropped and not body) or (run and gap):
                lines = [*pending, *new.leading_lines]
                if not pending and not _blank_prefix(new.leading_lines):
                    lines = [*gap, *lines]  # the separation the dropped run had stays (docstring, imports)
                if not body:  # now first in its block: no blank lines above it
                    while lines and lines[0].comment is None:
                        lines.pop(0)
                new = new.with_changes(leading_lines=lines)
                pending = []
            run, gap = False, []
            body.append(new)
        return body, pending

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body, pending = self._body(original_node.body, updated_node.body)
        if len(body) == len(updated_node.body):
            return updated_node
        if not body:
            return updated_node.with_changes(body=[cst.SimpleStatementLine([cst.Pass()], leading_lines=pending)])
        return updated_node.with_changes(body=body, footer=[*pending, *updated_node.footer])

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body, pending = self._body(original_node.body, updated_node.body)
        if len(body) == len(updated_node.body):
            return updated_node
        if body:
            return updated_node.with_changes(body=body, footer=[*pending, *updated_node.footer])
        # Nothing left: keep the comments, without the blank lines that separated them from code.
        lines = [*updated_node.header, *pending, *updated_node.footer]
        while lines and lines[-1].comment is None:
            lines.pop()
        return updated_node.with_changes(body=[], header=lines, footer=[], has_trailing_newline=bool(lines))


def _blank_prefix(lines: Sequence[cst.EmptyLine]) -> list[cst.EmptyLine]:
    """The blank lines (no comment) a statement's leading lines start with."""
    found = []
    for line in lines:
        if line.comment is not None:
            break
        found.append(line)
    return found


def _detached(lines: Sequence[cst.EmptyLine], *, attached: bool) -> list[cst.EmptyLine]:
    """The leading lines of a removed statement worth keeping: comments not attached to it.

    For a definition, the comment lines directly above it (no blank line in
    between) are its own and go with it. Blank lines only matter between
    comments, so a run without any comment is dropped, as are trailing blanks.
    """
    end = len(lines)
    if attached:
        while end and lines[end - 1].comment is not None:
            end -= 1
    kept = list(lines[:end])
    while kept and kept[-1].comment is None:
        kept.pop()
    return kept if any(line.comment is not None for line in kept) else []


def _without(
    original: Sequence[_Item],
    updated: Sequence[_Item],
    removed: set[int],
    closing: cst.BaseParenthesizableWhitespace | None = None,
) -> tuple[list[_Item], cst.BaseParenthesizableWhitespace | None]:
    """``updated`` without the items whose original is in ``removed``, and the new whitespace before the bracket.

    When the last item goes, the new last one keeps its own comma and comment
    in a multi-line list (one entry per line); the removed item's comment
    goes with it, and the closing bracket keeps its indentation.
    """
    kept = [new for orig, new in zip(original, updated, strict=True) if id(orig) not in removed]
    if kept and updated and kept[-1] is not updated[-1]:
        previous, last = kept[-1], updated[-1]
        own = previous.comma
        if isinstance(own, cst.Comma) and isinstance(own.whitespace_after, cst.ParenthesizedWhitespace):
            tail = last.comma.whitespace_after if isinstance(last.comma, cst.Comma) else None
            if isinstance(tail, cst.ParenthesizedWhitespace):
                indent = tail.last_line
            elif isinstance(closing, cst.ParenthesizedWhitespace):
                indent, closing = closing.last_line, cst.SimpleWhitespace("")
            else:
                indent = cst.SimpleWhitespace("")
            spacing = own.whitespace_after.with_changes(last_line=indent)
            kept[-1] = previous.with_changes(comma=own.with_changes(whitespace_after=spacing))
        else:
            # One line: the old last item's comma (trailing comma, closing whitespace) now ends the list.
            kept[-1] = previous.with_changes(comma=last.comma)
    return kept, closing
