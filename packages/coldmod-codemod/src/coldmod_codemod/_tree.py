"""The files under a root, read once: the word index, parsed files, module names, star imports.

Speed decides the design. The tree is read once: every file's identifiers are
collected once (the word index), so a key's candidate files are a set
lookup, not a search. Only Python files containing a searched name are
parsed, with the standard library's ``ast`` (C, ~100x faster than LibCST's
parser), each at most once, and the occurrences of every searched name are
collected in one pass per file into an index by name; every key is then
answered from the index. LibCST parses only the files that are edited (see
``_cstfile``); the tests check that both resolve alike.

A module can be imported under more than one name (``src/pkg/mod.py`` as
``pkg.mod``, a test helper as a top-level module through pytest's rootdir
insertion, a root that is itself a package): every spelling counts.
"""

from __future__ import annotations

import ast
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from coldmod_codemod._cstfile import CstFile, parse_cst
from coldmod_codemod._discovery import EXCLUDED_DIRS, module_for, walk_files
from coldmod_codemod._scopes import Binder
from coldmod_codemod._sites import TOKEN, WORD, Finder, Site, StringLiteral, nfkc, string_sites

__all__ = [
    "DERIVED_SUFFIXES", "SKIPPED_DIRS", "SKIPPED_FILES", "FileFailure", "ScannedFile", "Tree", "iter_source_files",
]

WORD_BYTES = re.compile(rb"\w+")
#: ``import *`` anywhere (after a semicolon, across a backslash): the cheap test before parsing for star imports.
_STAR_IMPORT = re.compile(rb"\bimport[\s\\]*\*")
#: Text files larger than this are not read (data dumps, not configuration).
_MAX_TEXT_BYTES = 2_000_000
#: Directories the reference scan never enters (tool caches and VCS data); other hidden ones are read.
SKIPPED_DIRS = EXCLUDED_DIRS | frozenset({
    ".git", ".hg", ".svn", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs",
})
#: Directories of copies of other projects' code (``static/vendor``, ``node_modules``): mentions there are not ours.
VENDORED_DIRS = frozenset({
    "vendor", "vendors", "vendored", "_vendor", "node_modules", "bower_components", "third_party", "third-party",
})
#: A text line longer than this was not written by hand (a minified asset).
MINIFIED_LINE = 1000
#: Files the scan never reads: Coldmod's own configuration names keys without referring to them.
SKIPPED_FILES = frozenset({"coldmod.rootmarker"})
_BINARY_SUFFIXES = frozenset({
    ".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".o", ".a", ".whl", ".zip", ".gz", ".bz2", ".xz",
    ".tar", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".pdf", ".woff", ".woff2", ".ttf", ".otf",
    ".eot", ".mo", ".db", ".sqlite", ".sqlite3", ".bin", ".mp3", ".mp4", ".svgz",
})
#: Text files generated from the code they seem to mention: a name in one was copied from a file the scan
#: reads anyway, and nothing looks a function up through it. Not read (Django ships 1,226 catalogs).
DERIVED_SUFFIXES = {
    ".po": "a gettext catalog: its messages are copied from the code's strings and templates",
    ".pot": "a gettext template: the same messages, untranslated",
    ".map": "a source map: positions and names of a built asset",
}


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be read or parsed, with why; it is left untouched."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        """``path:line: reason``."""
        return f"{self.path}:{self.line}: {self.reason}"


# -- files ------------------------------------------------------------------------


def iter_source_files(root: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Root-relative ``(python files, text files)`` the reference scan reads.

    Wider than discovery's walk: hidden directories (``.github``) are read,
    Python scripts without ``.py`` are recognised by their shebang, and every
    other small non-binary file is text that may name a function.
    """
    python: list[str] = []
    text: list[str] = []
    for rel, name in walk_files(root, SKIPPED_DIRS.__contains__):
        if name in SKIPPED_FILES:
            continue
        suffix = os.path.splitext(name)[1].lower()
        if suffix in (".py", ".pyi", ".pyw"):
            python.append(rel)
        elif suffix not in _BINARY_SUFFIXES and suffix not in DERIVED_SUFFIXES:
            text.append(rel)
    return python, text


def _is_python_script(data: bytes) -> bool:
    """A file without ``.py`` that is a Python script: its shebang names python."""
    first = data[:200].partition(b"\n")[0]
    return first.startswith(b"#!") and b"python" in first


def _words(data: bytes) -> frozenset[str]:
    """Every identifier-like word of a file, compared as Python compares identifiers (NFKC)."""
    if data.isascii():
        return frozenset(w.decode() for w in WORD_BYTES.findall(data))
    text = unicodedata.normalize("NFKC", data.decode("utf-8", "replace"))
    return frozenset(WORD.findall(text))


@dataclass(eq=False)
class ScannedFile:
    """One candidate file: its source, module, and the occurrences of the searched names."""

    path: str
    source: bytes
    module_name: str
    names: frozenset[str] = frozenset()
    sites: list[Site] = field(default_factory=list)
    tree: ast.Module | None = None
    binder: Binder | None = None
    package_name: str | None = None  # the package relative imports resolve against
    aliases: tuple[str, ...] = ()  # the module's other prefixes ("pkg.mod." for "src.pkg.mod.")
    everything: dict[str, list[Site]] | None = None
    strings: list[StringLiteral] = field(default_factory=list)

    @property
    def package(self) -> str:
        """The package relative imports in this file are resolved against."""
        if self.package_name is not None:
            return self.package_name
        return self.module_name if self.path.endswith("__init__.py") else self.module_name.rpartition(".")[0]

    def bind(self) -> Binder:
        """The file's scopes and definitions (computed once)."""
        if self.binder is None:
            assert self.tree is not None
            self.binder = Binder(self.path, self.module_name, self.package)
            self.binder.visit(self.tree)
        return self.binder

    def occurrences(self) -> tuple[dict[str, list[Site]], list[StringLiteral]]:
        """Every site of the file by name, and its strings (one pass, computed once)."""
        if self.everything is None:
            binder = self.bind()
            finder = Finder(binder, self.package, self.aliases)
            assert self.tree is not None  # bind() needs it too
            finder.visit(self.tree)
            everything: dict[str, list[Site]] = defaultdict(list)
            for site in finder.sites:
                everything[site.name].append(site)
                if site.shape == "import" and site.imported != site.name:
                    everything[site.imported].append(site)  # `from m import f as g` is found by f too
            self.everything, self.strings = everything, finder.strings
        return self.everything, self.strings

    def scan(self, names: frozenset[str]) -> list[Site]:
        """The occurrences of those of ``names`` not collected yet (they join ``sites``)."""
        new = names - self.names
        if not new:
            return []
        everything, strings = self.occurrences()
        given = {id(site) for site in self.sites}
        found = []
        for name in sorted(new):
            for site in everything.get(name, ()):
                if site.shape != "module" and id(site) not in given:
                    given.add(id(site))
                    found.append(site)
        found.extend(string_sites(strings, frozenset(new)))
        self.names = self.names | new
        self.sites.extend(found)
        return found


class Tree:
    """The files under a root, read once; parsed lazily, only where a name occurs, each at most once."""

    def __init__(self, root: str | os.PathLike[str], files: Iterable[str] | None = None) -> None:
        self.root = Path(root)
        if files is None:
            python, self.texts = iter_source_files(self.root)
        else:
            python, self.texts = [p.replace(os.sep, "/") for p in files], []
        self.paths = list(python)
        self.sources: dict[str, bytes] = {}
        self.scanned: dict[str, ScannedFile] = {}
        self.cst_files: dict[str, CstFile] = {}
        self.failures: dict[str, FileFailure] = {}
        self.by_name: dict[str, list[tuple[ScannedFile, Site]]] = defaultdict(list)
        self.imports: dict[str, list[tuple[ScannedFile, Site]]] = defaultdict(list)  # imported fqn -> sites
        self._words: dict[str, frozenset[str]] = {}
        self._word_index: dict[str, list[str]] | None = None
        self._text_words: dict[str, list[str]] | None = None
        self._text_queries = 0
        self._tokens: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self._stars: list[tuple[str, str]] | None = None
        self._modules: dict[str, list[str]] | None = None  # module name (any spelling) -> paths
        self._prefixes: dict[str, tuple[str, ...]] = {}
        self._order: dict[str, int] = {}  # path -> its place in ``paths`` (``containing`` answers in that order)
        self.memo: dict[str, dict[object, object]] = defaultdict(dict)  # derived facts by concern (classes, receivers)
        if files is None:
            self._find_scripts()

    def _find_scripts(self) -> None:
        """Text files that are Python scripts by their shebang move to the Python files."""
        scripts = []
        for path in self.texts:
            if "." not in path.rpartition("/")[2]:
                data = self.read(path)
                if data is not None and _is_python_script(data):
                    scripts.append(path)
        if scripts:
            self.paths.extend(scripts)
            moved = set(scripts)
            self.texts = [p for p in self.texts if p not in moved]

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None (and a failure) when it cannot be read."""
        data = self.sources.get(path)
        if data is None and path not in self.failures:
            try:
                data = self.sources[path] = (self.root / path).read_bytes()
            except OSError as exc:
                self.failures[path] = FileFailure(path, 1, f"cannot read the file ({exc.strerror or exc})")
        return data

    def words(self, path: str) -> frozenset[str]:
        """The identifier-like words of a file (NFKC), computed once."""
        found = self._words.get(path)
        if found is None:
            data = self.read(path)
            found = self._words[path] = _words(data) if data is not None else frozenset()
        return found

    def _index(self) -> dict[str, list[str]]:
        """Word -> the Python files containing it, built once for the whole tree."""
        if self._word_index is None:
            index: dict[str, list[str]] = defaultdict(list)
            for path in self.paths:
                for word in self.words(path):
                    index[word].append(path)
            self._word_index = index
        return self._word_index

    def containing(self, names: Iterable[str]) -> Iterator[str]:
        """Python files containing one of ``names`` as a whole word (the cheap prefilter), in tree order."""
        names = list(names)
        if len(names) <= 3 and self._word_index is None:
            yield from (p for p in self.paths if self._has_word(p, names))
            return
        index = self._index()
        found = {p for n in names for p in index.get(n, ())}
        if len(self._order) != len(self.paths):
            self._order = {p: i for i, p in enumerate(self.paths)}
        yield from sorted(found, key=self._order.__getitem__)

    def _has_word(self, path: str, names: list[str]) -> bool:
        """Whether the file contains one of a few ``names`` as a word (bytes first: no index for a small query)."""
        data = self.read(path)
        if data is None:
            return False
        if data.isascii() and not any(n.encode() in data for n in names if n.isascii()):
            return False
        words = self.words(path)
        return any(n in words for n in names)

    def module_prefixes(self, path: str) -> tuple[str, ...]:
        """Every ``module.`` prefix the file may be imported as; the first is its key's module."""
        found = self._prefixes.get(path)
        if found is not None:
            return found
        module = module_for(path)
        parts = module.split(".") if module else []
        names = [module]
        directories = path.split("/")[:-1]
        # A directory without __init__.py on the way down may be a sys.path entry
        # (src/ layouts, pytest's rootdir insertion of a test's directory).
        for depth in range(1, len(directories) + 1):
            if not (self.root.joinpath(*directories[:depth]) / "__init__.py").is_file():
                rest = parts[depth:]
                if rest:
                    names.append(".".join(rest))
        # A root that is itself a package is imported by its own name (and its parents').
        outer = self.root.resolve()
        prefix: list[str] = []
        while (outer / "__init__.py").is_file() and outer.name:
            prefix.insert(0, outer.name)
            names.append(".".join([*prefix, *parts]))
            outer = outer.parent
        found = self._prefixes[path] = tuple(dict.fromkeys(f"{n}." if n else "" for n in names))
        return found

    def _root_package(self, path: str) -> str | None:
        """The package to resolve relative imports against when the root itself is a package."""
        prefixes = self.module_prefixes(path)
        longest = max(prefixes, key=lambda p: p.count("."))
        if longest == prefixes[0]:
            return None
        module = longest[:-1]
        return module if path.endswith("__init__.py") else module.rpartition(".")[0]

    def modules(self) -> dict[str, list[str]]:
        """Every module spelling -> the Python files it may be."""
        if self._modules is None:
            found: dict[str, list[str]] = defaultdict(list)
            for path in self.paths:
                for prefix in self.module_prefixes(path):
                    found[prefix[:-1]].append(path)
            self._modules = found
        return self._modules

    def star_imports(self) -> list[tuple[str, str]]:
        """``(importing module, imported module)`` for every module-level ``from m import *`` in the tree."""
        if self._stars is None:
            self._stars = []
            for path in self.paths:
                data = self.read(path)
                if data is None or b"*" not in data or not _STAR_IMPORT.search(data):
                    continue  # only files that may hold `from m import *` are parsed for it
                scanned = self.file(path)
                if scanned is None:
                    continue
                for imported, _ in scanned.bind().stars:
                    if imported:
                        for prefix in self.module_prefixes(path):
                            self._stars.append((prefix[:-1], imported))
        return self._stars

    def exported(self, module: str, name: str) -> bool:
        """Whether ``from module import *`` binds ``name``: listed in its ``__all__``, else public."""
        for path in self.modules().get(module, ()):
            scanned = self.file(path)
            exports = scanned.bind().exports if scanned is not None else None
            if exports is not None:
                return name in exports
        return not name.startswith("_")

    def getattr_modules(self) -> set[str]:
        """Modules with a PEP 562 ``__getattr__``: ``from m import anything`` may succeed through it."""
        memo = self.memo["getattr modules"]
        if "found" not in memo:
            found: set[str] = set()
            for path in self.containing(["__getattr__"]):
                scanned = self.file(path)
                if scanned is not None and scanned.bind().module_getattr:
                    found.update(p[:-1] for p in self.module_prefixes(path))
            memo["found"] = found
        return memo["found"]  # type: ignore[return-value]

    def text_files_with(self, word: str) -> list[str]:
        """The text (non-Python) files containing ``word``; indexed once a plan asks for many words."""
        if self._text_words is None:
            self._text_queries += 1
            if self._text_queries <= 3:
                return [p for p in self.texts if self._readable_text(p) and self._has_word(p, [word])]
            index: dict[str, list[str]] = defaultdict(list)
            for path in self.texts:
                if self._readable_text(path):
                    for w in self.words(path):
                        index[w].append(path)
            self._text_words = index
        return self._text_words.get(word, [])

    def _readable_text(self, path: str) -> bool:
        data = self.read(path)
        return data is not None and len(data) <= _MAX_TEXT_BYTES and b"\0" not in data[:8192]

    def text_tokens(self, path: str) -> tuple[dict[str, int], dict[str, int]]:
        """A text file's dotted tokens (``pkg.mod:f``) and words, each with the line it first appears on."""
        found = self._tokens.get(path)
        if found is None:
            data = self.read(path) or b""
            text = nfkc(data.decode("utf-8", "replace"))
            tokens: dict[str, int] = {}
            words: dict[str, int] = {}
            for number, line in enumerate(text.splitlines(), 1):
                for token in TOKEN.findall(line):
                    tokens.setdefault(token.strip(".:"), number)
                    for word in WORD.findall(token):
                        words.setdefault(word, number)
            found = self._tokens[path] = (tokens, words)
        return found

    def foreign(self, path: str) -> bool:
        """Whether a text file is minified (``.min.``, or a line longer than ``MINIFIED_LINE``) or vendored."""
        memo = self.memo["foreign"]
        if path not in memo:
            directory, _, name = path.rpartition("/")
            data = self.read(path) or b""
            memo[path] = bool(VENDORED_DIRS & set(directory.split("/"))) or ".min." in name or any(
                len(line) > MINIFIED_LINE for line in data.splitlines())
        return bool(memo[path])

    def file(self, path: str) -> ScannedFile | None:
        """The parsed file, or None (and a failure) when it cannot be parsed."""
        scanned = self.scanned.get(path)
        if scanned is not None or path in self.failures:
            return scanned
        data = self.read(path)
        if data is None:
            return None
        try:
            tree = ast.parse(data, filename=path)
        except SyntaxError as exc:
            self.failures[path] = FileFailure(path, exc.lineno or 1, f"syntax error ({exc.msg})")
            return None
        except (UnicodeDecodeError, LookupError, ValueError, RecursionError, MemoryError) as exc:
            self.failures[path] = FileFailure(path, 1, f"cannot parse the file ({exc})")
            return None
        prefixes = self.module_prefixes(path)
        scanned = self.scanned[path] = ScannedFile(
            path, data, module_for(path), tree=tree, package_name=self._root_package(path), aliases=prefixes[1:]
        )
        return scanned

    def scan(self, path: str, names: frozenset[str]) -> None:
        """Collect the occurrences of ``names`` in one file into the indexes."""
        scanned = self.file(path)
        if scanned is None:
            return
        for site in scanned.scan(names):
            self.by_name[site.name].append((scanned, site))
            if site.shape == "import":
                for fqn in site.fqns:
                    self.imports[fqn].append((scanned, site))

    def adopt(self, path: str, source: bytes, module: cst.Module) -> None:
        """Take a module LibCST already parsed as the file at ``path`` (for the codemod commands)."""
        if path not in self.paths:
            self.paths.append(path)
            self.memo.pop("getattr modules", None)
        self.sources[path] = source
        scanned = self.file(path)
        result = parse_cst(path, source, scanned.tree, module) if scanned and scanned.tree else None
        if isinstance(result, CstFile):
            self.cst_files[path] = result
        elif result is not None:
            self.failures[path] = FileFailure(path, *result)

    def cst(self, path: str) -> CstFile | None:
        """The file parsed with LibCST (only files that are edited), or None (and a failure)."""
        parsed = self.cst_files.get(path)
        if parsed is not None or path in self.failures:
            return parsed
        scanned = self.file(path)
        if scanned is None or scanned.tree is None:
            return None
        result = parse_cst(path, scanned.source, scanned.tree)
        if isinstance(result, tuple):
            self.failures[path] = FileFailure(path, *result)
            return None
        self.cst_files[path] = result
        return result

    def defining_files(self, key: str) -> list[str]:
        """The files whose module is a prefix of ``key`` (where its definition can be)."""
        parts = key.split(".")
        known = set(self.paths) if len(self.paths) < 64 else self._known()
        found: list[str] = []
        for i in range(len(parts) - 1, -1, -1):
            base = "/".join(parts[:i])
            candidates = [f"{base}.py", f"{base}/__init__.py", f"{base}.pyi", f"{base}.pyw"] if base else [
                "__init__.py"]
            found.extend(c for c in candidates if c in known)
        return found

    def _known(self) -> set[str]:
        known = getattr(self, "_known_paths", None)
        if known is None or len(known) != len(self.paths):
            known = self._known_paths = set(self.paths)
        return known
