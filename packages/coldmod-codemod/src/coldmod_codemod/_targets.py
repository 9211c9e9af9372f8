"""The keys being searched: where each is defined, and every name it is known by (imports, re-exports).

``locate`` finds each key's definitions; ``collect`` scans the candidate files
for its names, following ``from m import f as g`` and ``from m import *``
until no new name appears.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coldmod_codemod._scopes import Binder, DefInfo, Definition
from coldmod_codemod._sites import nfkc
from coldmod_codemod._tree import Tree

__all__ = ["Target", "collect", "locate"]


@dataclass
class Target:
    """One key being looked for: its definitions and every name it is known by."""

    key: str
    definitions: list[Definition]
    fqns: set[str]
    names: set[str]
    infos: list[DefInfo] = field(default_factory=list)
    binder: Binder | None = None

    @property
    def bare_name(self) -> str:
        """The function's own name (last part of the key)."""
        return self.key.rpartition(".")[2]

    @property
    def class_fqn(self) -> str | None:
        """For a method, the fully qualified name of its class."""
        qualname = self.definitions[0].qualname if self.definitions else ""
        owner, _, _ = qualname.rpartition(".")
        if not owner or owner.endswith("<locals>"):
            return None
        return self.key[: len(self.key) - len(qualname)] + owner


def locate(tree: Tree, keys: Iterable[str]) -> dict[str, Target]:
    """Each key's definitions (an empty list for a key defined nowhere)."""
    targets: dict[str, Target] = {}
    by_file: dict[str, dict[str, list[DefInfo]]] = {}
    for key in keys:
        key = nfkc(key)
        name = key.rpartition(".")[2]
        target = targets[key] = Target(key, [], {key}, {name})
        for path in tree.defining_files(key):
            if name not in tree.words(path):
                continue
            scanned = tree.file(path)
            if scanned is None:
                continue
            infos = by_file.get(path)
            if infos is None:
                infos = by_file[path] = defaultdict(list)
                for info in scanned.bind().infos:
                    infos[info.definition.key].append(info)
            found = infos.get(key, [])
            target.infos.extend(found)
            target.definitions.extend(i.definition for i in found)
            if found:
                target.binder = scanned.bind()
                qualname = found[0].definition.qualname
                target.fqns.update(prefix + qualname for prefix in tree.module_prefixes(path))
    return targets


def collect(tree: Tree, targets: dict[str, Target], tick: Callable[[], None] | None = None) -> None:
    """Scan every candidate file, following imports and re-exports until no new name appears.

    ``tick()`` is called once per file of the tree as the first round goes through it.
    """
    scanned_names: set[str] = set()
    expanded: dict[str, set[str]] = {key: set() for key in targets}
    while True:
        names = set().union(*(t.names for t in targets.values())) if targets else set()
        new_names = names - scanned_names
        if not new_names:
            return
        frozen = frozenset(new_names)
        candidates = set(tree.containing(new_names))
        for path in list(tree.paths):
            if path in candidates:
                tree.scan(path, frozen)
            if tick is not None and not scanned_names:
                tick()
        scanned_names = names
        for target in targets.values():
            _expand(tree, target, expanded[target.key])


def _expand(tree: Tree, target: Target, done: set[str]) -> None:
    """Add the names the target is bound to by imports (in any scope) and star imports of it."""
    work = [f for f in target.fqns if f not in done]
    while work:
        fqn = work.pop()
        if fqn in done:
            continue
        done.add(fqn)
        module, _, name = fqn.rpartition(".")
        for importer, imported in tree.star_imports():
            alias = f"{importer}.{name}" if importer else name
            if module == imported and alias not in target.fqns and tree.exported(imported, name):
                target.fqns.add(alias)
                work.append(alias)
        for _scanned, site in tree.imports.get(fqn, ()):
            # `from m import f as g` binds g in its scope: uses of g are uses of f.
            target.names.add(site.name)
            for alias in site.binds:
                if alias not in target.fqns:
                    target.fqns.add(alias)
                    work.append(alias)
