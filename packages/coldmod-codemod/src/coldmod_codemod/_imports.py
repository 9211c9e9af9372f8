"""Imports that only the removed code used: found in the files a plan edits, so they go too.

Only bindings the removal orphans are touched: an import binding with at
least one use inside a removed definition and none anywhere else in its
file (``__all__`` entries and strings count as uses), that no other file
imports from this module either. An import that was unused before stays.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from coldmod_codemod._references import ScannedFile, Site, Tree, _Finder, _Scope

__all__ = ["Orphan", "orphaned_imports"]


@dataclass(frozen=True)
class Orphan:
    """An import alias only removed code used: the ``ast`` alias, its module, and the removed defs that used it."""

    alias: ast.alias
    statement: ast.Import | ast.ImportFrom
    module: str | None  # the module it imports from (``from m import x``: ``m``; ``import m``: ``m``)
    users: tuple[int, ...]  # `def` lines of the removed definitions that used it


@dataclass
class _Binding:
    alias: ast.alias
    statement: ast.Import | ast.ImportFrom
    name: str  # the bound name
    scope: _Scope  # where it is bound
    module: str | None
    enclosing: tuple[int, ...]
    uses: list[Site]


class _Uses(_Finder):
    """Every import binding of a file and every load of the names they bind, with the scope each resolves in."""

    def __init__(self, scanned: ScannedFile, names: frozenset[str]) -> None:
        super().__init__(scanned.bind(), names, scanned.package, scanned.aliases, frozenset())
        self.bindings: list[_Binding] = []
        self.resolving: dict[int, _Scope | None] = {}  # id(site) -> the scope its name resolves in

    def _bind(self, node: ast.Import | ast.ImportFrom, alias: ast.alias, name: str, module: str | None) -> None:
        scope = self.scope.binder_of(name)
        self.bindings.append(_Binding(alias, node, name, scope, module, self._enclosing, []))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(node, alias, alias.asname or alias.name.partition(".")[0], alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        from coldmod_codemod._references import _absolute

        module = _absolute(node, self.package)
        for alias in node.names:
            if alias.name != "*":
                self._bind(node, alias, alias.asname or alias.name, module)

    def visit_Name(self, node: ast.Name) -> None:
        before = len(self.sites)
        super().visit_Name(node)
        if len(self.sites) > before:
            self.resolving[id(self.sites[-1])] = _resolving_scope(self.scope, node.id)


def _resolving_scope(scope: _Scope, name: str) -> _Scope | None:
    """The scope whose binding ``name`` reads (the class-body fallback reads outside too: None = ambiguous)."""
    current: _Scope | None = scope
    if name in scope.declared_global:
        while current is not None and current.parent is not None:
            current = current.parent
    first = True
    while current is not None:
        if (first or current.kind != "class") and name in current.bindings:
            return None if current.kind == "class" and current.parent is not None else current
        first = False
        current = current.parent
    return None


def orphaned_imports(tree: Tree, scanned: ScannedFile, gone: set[int]) -> list[Orphan]:
    """The import aliases of ``scanned`` that only the definitions at ``gone`` (``def`` lines) used."""
    assert scanned.tree is not None
    binder = scanned.bind()
    names = frozenset(
        (a.asname or a.name.partition(".")[0]) if isinstance(n, ast.Import) else (a.asname or a.name)
        for n in ast.walk(scanned.tree) if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names if a.name != "*"
    )
    if not names:
        return []
    finder = _Uses(scanned, names)
    finder.visit(scanned.tree)
    by_name: dict[str, list[_Binding]] = {}
    for binding in finder.bindings:
        by_name.setdefault(binding.name, []).append(binding)
    found: list[Orphan] = []
    for name, bindings in by_name.items():
        uses = [s for s in finder.sites if s.name == name]
        for binding in bindings:
            if any(line in gone for line in binding.enclosing):
                continue  # the import itself is removed with its function
            mine = [s for s in uses if _reads(s, binding, finder.resolving)]
            removed = [s for s in mine if any(line in gone for line in s.enclosing)]
            if not removed or len(removed) != len(mine):
                continue
            if binding.scope is binder.root and _used_elsewhere(tree, scanned, name):
                continue
            users = tuple(sorted({next(line for line in s.enclosing if line in gone) for s in removed}))
            found.append(Orphan(binding.alias, binding.statement, binding.module, users))
    return found


def _reads(site: Site, binding: _Binding, resolving: dict[int, _Scope | None]) -> bool:
    """Whether ``site`` may read ``binding``: names resolving to its scope; any string or ``__all__`` entry."""
    if site.shape != "name":
        return True
    scope = resolving.get(id(site))
    return scope is None or scope is binding.scope


def _used_elsewhere(tree: Tree, scanned: ScannedFile, name: str) -> bool:
    """Whether another file may reach the module-level ``name`` of this module (imports it, ``mod.name``, ``*``)."""
    fqns = {prefix + name for prefix in tree.module_prefixes(scanned.path)}
    modules = {f.rpartition(".")[0] for f in fqns}
    if any(imported in modules for _, imported in tree.star_imports()) and tree.exported(scanned.module_name, name):
        return True
    for path in tree.containing([name]):
        if path != scanned.path:
            tree.scan(path, frozenset({name}) | (tree.scanned[path].names if path in tree.scanned else frozenset()))
    for other, site in tree.by_name.get(name, ()):
        if other is not scanned and site.shape in ("import", "attribute", "name") and site.fqns & fqns:
            return True
    return False


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
    from coldmod_codemod._references import _absolute

    assert scanned.tree is not None
    known = tree.modules()
    modules: dict[int, tuple[str, int]] = {}
    remaining: set[str] = set()
    for node in ast.walk(scanned.tree):
        if isinstance(node, ast.Import):
            pairs = [(alias, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, scanned.package)
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
