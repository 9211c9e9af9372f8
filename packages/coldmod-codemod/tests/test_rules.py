"""The rules table and the finders agree: every kind emitted is a row, every row is emitted somewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import coldmod_codemod
from coldmod_codemod import _rules
from coldmod_codemod._findings import Reference
from coldmod_codemod._rules import RULES

PACKAGE = Path(coldmod_codemod.__file__).parent
#: The constants of ``_rules`` that name a kind of finding (not verdicts or sites).
KINDS = {
    name: value for name, value in vars(_rules).items()
    if name.isupper() and isinstance(value, str) and value in RULES
}


def _emitted() -> tuple[set[str], list[str]]:
    """Kinds the package's modules emit (rule constants, literal kinds), and the literal kinds not in RULES."""
    emitted: set[str] = set()
    unknown: list[str] = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "_rules.py":
            continue
        module = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.asname or alias.name
            for node in ast.walk(module)
            if isinstance(node, ast.ImportFrom) and node.module == "coldmod_codemod._rules"
            for alias in node.names
        }
        for node in ast.walk(module):
            if isinstance(node, ast.Name) and node.id in imported and node.id in KINDS:
                emitted.add(KINDS[node.id])
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Reference":
                kinds = [*node.args[4:5], *(k.value for k in node.keywords if k.arg == "kind")]
                for kind in kinds:
                    if isinstance(kind, ast.Constant):
                        emitted.add(kind.value)
                        if kind.value not in RULES:
                            unknown.append(f"{path.name}:{kind.lineno} {kind.value!r}")
    return emitted, unknown


def test_every_emitted_kind_is_a_rule_and_every_rule_is_emitted() -> None:
    emitted, unknown = _emitted()
    assert unknown == []
    assert set(RULES) - emitted == set()


def test_every_rule_has_its_constant() -> None:
    assert set(KINDS.values()) == set(RULES)


def test_a_misspelled_kind_fails_when_the_reference_is_made() -> None:
    with pytest.raises(ValueError, match="'calll' is not a rule"):
        Reference("pkg.f", "pkg/use.py", 1, 0, "calll")
    assert Reference("pkg.f", "pkg/use.py", 1, 0, _rules.CALL).verdict == _rules.UNSAFE
