"""Imports that only the removed code used: found in the files a plan edits, so they go too.

Only bindings the removal orphans are touched: an import binding with at
least one use inside a removed definition and none anywhere else in its
file (``__all__`` entries and strings count as uses), that no other file
imports from this module either, and that no dotted path in a string or a
text file names (``mock.patch("pkg.mod.json.loads")`` reads ``pkg.mod.json``).
An import that was unused before stays.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from coldmod_codemod._scopes import absolute
from coldmod_codemod._sites import Site, string_sites
from coldmod_codemod._tree import ScannedFile, Tree

__all__ = ["Orphan", "orphaned_imports"]


@dataclass(frozen=True)
class Orphan:
    """An import alias only removed code used: its ``ast`` node's id, and the removed definitions that used it."""

    alias_id: int
    line: int
    users: tuple[int, ...]  # `def` lines of the removed definitions that used it


def orphaned_imports(tree: Tree, scanned: ScannedFile, gone: set[int]) -> list[Orphan]:
    """The import aliases of ``scanned`` that only the definitions at ``gone`` (``def`` lines) used."""
    everything, strings = scanned.occurrences()
    root = id(scanned.bind().root)
    found: list[Orphan] = []
    for name, all_sites in everything.items():
        sites = [s for s in all_sites if s.name == name]
        bindings = [s for s in sites if s.shape in ("import", "module") and not _in(s, gone)]
        if not bindings:
            continue
        mentions = list(string_sites(strings, frozenset({name})))
        for binding in bindings:
            uses = [s for s in [*sites, *mentions] if _reads(s, binding)]
            removed = [s for s in uses if _in(s, gone)]
            if not removed or len(removed) != len(uses):
                continue
            if binding.scope_id == root and _used_elsewhere(tree, scanned, name):
                continue
            users = tuple(sorted({next(line for line in s.enclosing if line in gone) for s in removed}))
            found.append(Orphan(binding.node_id, binding.line, users))
    return found


def _in(site: Site, gone: set[int]) -> bool:
    return any(line in gone for line in site.enclosing)


def _reads(site: Site, binding: Site) -> bool:
    """Whether ``site`` may read ``binding``: a name resolving to its scope (or ambiguous), or any other shape."""
    if site.shape in ("import", "module"):
        return False
    if site.shape == "name":
        return site.scope_id in (0, binding.scope_id)
    if site.shape in ("string", "mention"):
        # A string annotation names the import ("Foo", "mod.Foo"); so may a string that is the bare
        # name alone (registries, globals()["name"]). Prose and other paths ("caches.E001") do not.
        return site.annotation or (site.shape == "string" and binding.name in site.fqns)
    return True  # an attribute of that name, an __all__ entry: keep the import


def _used_elsewhere(tree: Tree, scanned: ScannedFile, name: str) -> bool:
    """Whether another file may reach the module-level ``name`` of this module (imports it, ``mod.name``, ``*``)."""
    fqns = {prefix + name for prefix in tree.module_prefixes(scanned.path)}
    modules = {f.rpartition(".")[0] for f in fqns}
    if any(imported in modules for _, imported in tree.star_imports()) and tree.exported(scanned.module_name, name):
        return True
    for path in tree.containing([name]):
        other = tree.file(path) if path != scanned.path else None
        if other is None:
            continue
        for site in other.occurrences()[0].get(name, ()):
            if site.shape in ("import", "attribute", "name") and site.fqns & fqns:
                return True
    return any(_names(token, fqns) for token in _dotted_mentions(tree, name))


def _dotted_mentions(tree: Tree, name: str) -> frozenset[str]:
    """The dotted paths holding ``name`` in the tree's Python strings and text files (found once per name)."""
    memo = tree.memo["dotted-mentions"]
    if name not in memo:
        found: set[str] = set()
        for path in tree.containing([name]):
            scanned = tree.file(path)
            if scanned is not None:
                found.update(t for site in string_sites(scanned.occurrences()[1], frozenset({name})) for t in site.fqns)
        for path in tree.text_files_with(name):
            found.update(t for t in tree.text_tokens(path)[0] if name in t)
        memo[name] = frozenset(t for t in found if "." in t or ":" in t)
    return memo[name]  # type: ignore[return-value]


def _names(path: str, fqns: set[str]) -> bool:
    """Whether the dotted path (``pkg.mod.json.loads``, ``pkg.mod:json``) names one of ``fqns`` or inside it."""
    path = path.replace(":", ".")
    return any(path == fqn or path.startswith(fqn + ".") for fqn in fqns)


def lost_modules(
    tree: Tree,
    scanned: ScannedFile,
    removed: set[int],
    gone: list[tuple[int, int]],
    aliases: list[tuple[int, set[str]]],
) -> list[tuple[int, set[str], int]]:
    """``(id(alias), keys, line)`` for removed imports whose in-tree module the file then no longer imports.

    Importing a module runs it, and a module may register things when it runs
    (signal receivers, template tags, plugins): dropping the file's last import
    of it could change behaviour, so the keys responsible go to review.
    """
    assert scanned.tree is not None
    known = tree.modules()
    modules: dict[int, tuple[str, int]] = {}
    remaining: set[str] = set()
    for node in ast.walk(scanned.tree):
        if isinstance(node, ast.Import):
            pairs = [(alias, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, scanned.package)
            if base is None:
                continue
            pairs = [(a, f"{base}.{a.name}" if f"{base}.{a.name}" in known else base) for a in node.names]
        else:
            continue
        for alias, module in pairs:
            modules[id(alias)] = (module, node.lineno)
            if id(alias) not in removed and not any(start <= node.lineno <= end for start, end in gone):
                remaining.add(module)
    own = [p[:-1] for p in tree.module_prefixes(scanned.path) if p]
    ancestors = {".".join(m.split(".")[:i]) for m in own for i in range(1, m.count(".") + 2)}
    lost = []
    for alias_id, keys in aliases:
        module, line = modules.get(alias_id, ("", 0))
        if not module or module not in known or module in ancestors:
            continue  # not in the tree, or imported anyway (this module's own packages)
        if any(r == module or r.startswith(module + ".") for r in remaining):
            continue  # still imported here (importing a submodule imports its package)
        lost.append((alias_id, keys, line))
    return lost
