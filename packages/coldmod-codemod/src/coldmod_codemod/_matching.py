"""Matching: which sites refer to a key, with which rule — the finders that emit findings.

Every finding is a ``Reference`` whose kind is a constant of ``_rules``: the
sites of the key's names in Python files (``_classify``), its mentions in
text files, the rules about its own definition (``_conventions``), and files
that mention it but cannot be parsed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

from coldmod_codemod._containment import STRINGS, by_name_only, may_hold
from coldmod_codemod._conventions import definition_findings
from coldmod_codemod._findings import Match, Reference
from coldmod_codemod._receivers import may_reach, receivers
from coldmod_codemod._rules import (
    ALL,
    ATTRIBUTE,
    CALL,
    ENTRY_POINT,
    EXPORT,
    IMPLICIT,
    IMPORT,
    MENTION,
    METHOD,
    NAME,
    RULES,
    STRING,
    TEMPLATE,
    TEXT,
    UNPARSED,
    UNRESOLVED,
)
from coldmod_codemod._scopes import Definition
from coldmod_codemod._sites import Site, nfkc
from coldmod_codemod._targets import Target, collect, locate
from coldmod_codemod._tree import ScannedFile, Tree

__all__ = ["find_references", "inside", "match", "spellings", "within"]


def match(tree: Tree, target: Target) -> list[Match]:
    """Every finding for ``target``: sites that may refer to it, other files, and its definition's own rules."""
    matches: list[Match] = []
    class_fqn = target.class_fqn
    getattr_modules = tree.getattr_modules() if target.definitions else set()
    unnamed = frozenset(STRINGS) if by_name_only(tree, class_fqn, target.bare_name) else frozenset()
    spelled = spellings(target)
    for name in sorted(target.names):
        for scanned, site in tree.by_name.get(name, ()):
            kind, certain = _classify(tree, site, target, scanned, class_fqn, getattr_modules, spelled)
            if kind is not None and kind not in unnamed:
                ref = Reference(target.key, scanned.path, site.line, site.column, kind, certain)
                matches.append(Match(ref, site))
    matches.sort(key=lambda m: (m.reference.path, m.reference.line, m.reference.column))
    matches.extend(m for m in _text_findings(tree, target) if m.reference.kind not in unnamed)
    matches.extend(Match(ref, None) for ref in definition_findings(tree, target))
    for path in sorted(tree.failures):
        data = tree.sources.get(path)
        if data is not None and target.names & tree.words(path) and path not in tree.texts:
            failure = tree.failures[path]
            matches.append(Match(Reference(target.key, path, failure.line, 0, UNPARSED, False), None))
    return matches


def spellings(target: Target) -> frozenset[str]:
    """How an entry point or dotted config names the target: ``pkg.mod.C.m`` and ``pkg.mod:C.m``, every spelling."""
    found = set(target.fqns)
    if target.definitions:
        qualname = target.definitions[0].qualname
        for fqn in target.fqns:
            if fqn.endswith("." + qualname):
                found.add(f"{fqn[: -len(qualname) - 1]}:{qualname}")
    return frozenset(found)


#: Template files: by suffix, or any text file in a ``templates`` directory (Django's and Jinja's loaders).
TEMPLATE_SUFFIXES = (".html", ".htm", ".jinja", ".jinja2", ".j2", ".djhtml", ".tpl", ".tmpl", ".txt", ".xml")
TEMPLATE_DIRS = frozenset({"templates", "jinja2"})
#: A template's variable or tag (``{{ ... }}``, ``{% ... %}``), the quoted strings in one, and an attribute
#: looked up in one (``.name`` after an expression).
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_LOOKUP = re.compile(r"(?<=[\w\)\]])\s*\.\s*([A-Za-z_]\w*)")


def _text_findings(tree: Tree, target: Target) -> Iterator[Match]:
    """Mentions in text files: the full path (``mod:f``, ``mod.C.m``) is an entry point, a method's name looked
    up in a template's tag (``{{ obj.name }}``: any object it is given) a template reference, any other bare name
    a review.

    In a minified or vendored file any of them is only a mention: nobody maintains a reference there by hand.
    """
    name = target.bare_name
    paths = tree.text_files_with(name)
    if not paths:
        return
    names = spellings(target)
    for path in paths:
        tokens, words = tree.text_tokens(path)
        line = min((tokens[s] for s in names if s in tokens), default=0)
        looked_up = 0 if line or target.class_fqn is None else template_lookups(tree, path).get(name, 0)
        kind = MENTION if tree.foreign(path) else ENTRY_POINT if line else TEMPLATE if looked_up else TEXT
        line = line or looked_up or words.get(name, 0)
        if line:
            yield Match(Reference(target.key, path, line, 0, kind, False), None)


def template_lookups(tree: Tree, path: str) -> dict[str, int]:
    """The attributes a template file looks up in its tags (``{{ call.tottime }}``: ``tottime``), each with the
    line it first appears on; none in a file that is not a template."""
    memo = tree.memo["template-lookups"]
    if path not in memo:
        found: dict[str, int] = {}
        directory, _, base = path.rpartition("/")
        if base.lower().endswith(TEMPLATE_SUFFIXES) or TEMPLATE_DIRS & set(directory.split("/")):
            text = nfkc((tree.read(path) or b"").decode("utf-8", "replace"))
            for tag in _TAG.finditer(text):
                bare = _QUOTED.sub(lambda q: " " * len(q.group()), tag.group())
                for lookup in _LOOKUP.finditer(bare):
                    line = text.count("\n", 0, tag.start() + lookup.start(1)) + 1
                    found.setdefault(lookup.group(1), line)
        memo[path] = found
    return memo[path]  # type: ignore[return-value]


def _classify(
    tree: Tree,
    site: Site,
    target: Target,
    scanned: ScannedFile,
    class_fqn: str | None,
    getattr_modules: set[str],
    spelled: frozenset[str],
) -> tuple[str | None, bool]:
    """The kind of reference ``site`` is to ``target``, or None when it is not one."""
    resolved = not site.fqns.isdisjoint(target.fqns)
    if site.shape == "import":
        if resolved:
            return IMPORT, True
        if site.unbound and site.imported == target.bare_name:
            return UNRESOLVED, False  # `from ...x import f` beyond the root: cannot be ruled out
        if site.imported == target.bare_name and any(
            f.rpartition(".")[0] in getattr_modules for f in site.fqns
        ) and not _defined(tree, site.fqns):
            return EXPORT, False
        return None, True
    if site.shape == "all":
        prefixes = (scanned.module_name + "." if scanned.module_name else "", *scanned.aliases)
        return (ALL, True) if any(p + site.name in target.fqns for p in prefixes) else (None, True)
    if site.shape == "string":
        # A string becomes a name only where code looks names up (getattr, a dispatch dict, globals()[...]) or
        # as a path ("pkg.mod.f", "pkg.mod:f"); a bare word anywhere else is only a mention.
        path = any(c in f for f in site.fqns for c in ".:")
        return (STRING if site.lookup or path else MENTION), False
    if site.shape == "mention":
        if site.name != target.bare_name:
            return None, True
        return (ENTRY_POINT if not site.fqns.isdisjoint(spelled) else MENTION), False
    if resolved:
        return (METHOD if class_fqn else CALL if site.call else NAME), True
    if site.shape == "name":
        return (NAME, False) if site.unbound else (None, True)
    if class_fqn is not None and site.self_class == class_fqn and site.name == target.bare_name:
        return METHOD, True
    if site.receiver is not None and site.scope is not None:
        if not may_reach(tree, receivers(tree, site.receiver, site.scope), class_fqn, site.name):
            return None, True  # the object cannot be an instance or the class of the function's class
        if class_fqn is not None and not may_hold(tree, class_fqn, site.receiver):
            return None, True  # no instance of the class, nor the class, can get there (``_containment``)
    return ATTRIBUTE, False


def _defined(tree: Tree, fqns: Iterable[str]) -> bool:
    """Whether one of ``fqns`` names something a module in the tree binds itself."""
    for fqn in fqns:
        module, _, name = fqn.rpartition(".")
        for path in tree.modules().get(module, ()):
            scanned = tree.file(path)
            if scanned is not None and name in scanned.bind().root.bindings:
                return True
    return False


def inside(definitions: Iterable[Definition], ref: Reference) -> bool:
    """Whether the reference lies within one of the definitions (decorators included)."""
    rule = RULES.get(ref.kind)
    if ref.kind == IMPLICIT or (rule is not None and rule.own):
        return False  # reported at the definition, but about every caller
    return any(d.path == ref.path and d.start_line <= ref.line <= d.end_line for d in definitions)


def within(found: Match, removed: set[tuple[str, int]]) -> bool:
    """Whether the finding lies inside one of the ``(path, def line)`` definitions being removed."""
    site = found.site
    if site is None or not site.enclosing:
        return False
    path = found.reference.path
    return any((path, line) in removed for line in site.enclosing)


def find_references(
    root: str | os.PathLike[str], key: str, *, files: Iterable[str] | None = None
) -> list[Reference]:
    """Every site under ``root`` that may refer to the function ``key``, outside its own definitions.

    Files that mention the name but cannot be parsed are reported as
    references of kind ``unparsed``; the rules about the definition itself
    (decorators, dispatch by name) are verdicts, not references, and are left out.
    """
    tree = Tree(root, files)
    targets = locate(tree, [key])
    collect(tree, targets)
    target = targets[nfkc(key)]
    own = {(d.path, d.line) for d in target.definitions}
    return [
        m.reference for m in match(tree, target)
        if not within(m, own) and not RULES[m.reference.kind].own
    ]
