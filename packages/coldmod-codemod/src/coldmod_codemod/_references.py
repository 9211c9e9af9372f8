"""Where a function may be referred to: imports, uses, ``__all__``, attributes, strings, other files.

The reference finder, by concern (each module depends only on those above it;
no cycle):

- ``_rules``: the verdict rules table and the constant for each kind of finding;
- ``_scopes``: name resolution, the scopes of one module and what they bind;
- ``_sites``: the occurrences of names in one parsed file;
- ``_tree``: the files under a root, read once (the word index, parsed files, modules);
- ``_findings``: ``Reference`` and ``Match``, what a search finds;
- ``_targets``: the keys searched, their definitions and every name they are known by;
- ``_classes``: the class hierarchy of the tree;
- ``_receivers``: what the object before a ``.name`` may be (the receiver table);
- ``_conventions``: the rules about a definition itself (decorators, dispatch by name);
- ``_matching``: which sites refer to a key, and with which rule;
- ``_routes``: the views routes register, and the tests that request their URLs.

This module re-exports the names the rest of the package imports.
"""

from __future__ import annotations

from coldmod_codemod._findings import Match, Reference
from coldmod_codemod._matching import find_references, inside, match, spellings, within
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
    REMOVABLE_KINDS,
    STRING,
    TEXT,
    UNPARSED,
    UNRESOLVED,
)
from coldmod_codemod._scopes import Definition
from coldmod_codemod._sites import Site, string_sites
from coldmod_codemod._targets import Target, collect, locate
from coldmod_codemod._tree import FileFailure, ScannedFile, Tree, iter_source_files

__all__ = [
    "ALL",
    "ATTRIBUTE",
    "CALL",
    "ENTRY_POINT",
    "EXPORT",
    "IMPLICIT",
    "IMPORT",
    "MENTION",
    "METHOD",
    "NAME",
    "REMOVABLE_KINDS",
    "STRING",
    "TEXT",
    "UNPARSED",
    "UNRESOLVED",
    "Definition",
    "FileFailure",
    "Match",
    "Reference",
    "ScannedFile",
    "Site",
    "Target",
    "Tree",
    "collect",
    "find_references",
    "inside",
    "iter_source_files",
    "locate",
    "match",
    "spellings",
    "string_sites",
    "within",
]
