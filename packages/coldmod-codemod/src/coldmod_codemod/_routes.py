"""Routes: a test that requests a URL refers to the view registered under a pattern the URL matches.

A view never named in a test is still reached by it: ``client.get("/hello")``
runs the function ``@app.route("/hello")`` registered. Such a request is a
finding of the ``url`` rule at the string, in the test that makes it, so the
test-only machinery (``_testonly``) treats the test as the view's companion:
the view is ``test-only``, and goes together with the tests that request it
when they request nothing else that stays.

How a view is registered under a pattern (one row each; the pattern is a string literal):

================================================  ============================================================
registration                                       read as
================================================  ============================================================
``@x.route("/p")``, ``@x.get/post/put/patch/``     the decorated function, under ``/p`` (first positional
``delete/head/options("/p")``, ``@x.api_route``,   argument or ``rule=``/``path=``, starting with ``/``): Flask
``@x.websocket("/p")``, ``@get("/p")``             and blueprints, FastAPI/Starlette routers, Bottle, Sanic, Quart
``x.add_url_rule("/p", "endpoint", f)``,           ``f`` (``view_func=``, ``endpoint=``, ``handler=`` or the
``x.add_api_route("/p", f)``, ``Route("/p", f)``,  first positional argument after the pattern that names a
``x.add_route("GET", "/p", f)``                    function), under ``/p``
``path("p/", view)``, ``re_path(r"^p/$", view)``,  Django: ``view`` under ``p``, relative to the ``include()``
``url(r"^p/$", view)``                             prefixes above it, so matched as the end of a requested path
``Blueprint(..., url_prefix="/a")``,               ``/a`` before the blueprint's or router's routes, when the
``APIRouter(prefix="/a")`` in the same module      decorator's object is assigned so at module level
================================================  ============================================================

A prefix from elsewhere (``register_blueprint(bp, url_prefix=...)``, ``include()``, a mount) is not
resolved: every pattern also matches as the end of a requested path (``/hello`` matches ``/x/hello``),
except one made only of ``/`` and parameters (``/``, ``/<name>``), which matches only exactly. A view
given as ``C.as_view()`` is a class-based view: a request to it reaches the class, which is never a
planned function, so it keeps the test that makes it (its verb methods keep the ``http-method`` rule).

URL parameters, per framework: ``<name>``, ``<int:name>``, ``{name}``, ``{name:int}``, ``:name``
(Bottle's old style) are one path segment (``[^/]+``); ``<path:name>``, ``{name:path}``,
``<name:re:...>``, ``:name#regex#`` any text; a Django regex's groups any text.

What a test requests: every string literal of a test file that starts with ``/`` or
``http(s)://`` and holds no whitespace (not one compared with, nor one given to an
``assert...`` method: ``location == "/"`` is an expectation), and the templates ``f"/a/{x}"``,
``"/a/{}".format(x)``, ``"/a/%s" % x`` and
``"/a/" + x`` (each placeholder any text, so ``"/digest-auth/{0}/{1}/{2}"`` matches every
``/digest-auth/...`` route: a wrong match only keeps a key, a missed one breaks the suite; but
``"/" + x``, whose known text is only ``/``, joins a path and names no route, and a placeholder is
never the unresolved prefix: ``f"/a/{x}"`` does not end in every route). A placeholder before the
first ``/`` is the host (``f"{base}/hello"``). Scheme and host, query and fragment are dropped; a
trailing ``/`` does not count.
``url_for("bp.name")``, ``reverse("ns:name")``, ``reverse_lazy``, ``url_path_for`` name a view by
its endpoint (Flask: the function's name or ``endpoint=``; Django, FastAPI, Starlette: ``name=``).
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from coldmod_codemod._findings import Match, Reference
from coldmod_codemod._rules import DECORATOR, URL
from coldmod_codemod._scopes import Binder, Scope, Visitor, dotted
from coldmod_codemod._sites import Site
from coldmod_codemod._targets import Target
from coldmod_codemod._tree import ScannedFile, Tree

__all__ = ["Request", "Route", "requested", "with_requests"]

#: Decorator methods (or functions) that register the decorated function under a URL pattern.
ROUTE_DECORATORS = frozenset({
    "route", "get", "post", "put", "patch", "delete", "head", "options", "api_route", "websocket", "websocket_route",
})
#: Calls that register a view given as an argument under a pattern starting with ``/``.
REGISTRATION_CALLS = frozenset({"add_url_rule", "add_api_route", "add_route", "add_websocket_route", "Route",
                                "add_get", "add_post", "add_put", "add_patch", "add_delete"})
#: Django's calls: the pattern is relative to the include() prefixes; ``path`` has converters, the others regexes.
DJANGO_CALLS = {"path": "path", "re_path": "regex", "url": "regex"}
_REGISTRATION_NAMES = REGISTRATION_CALLS | frozenset(DJANGO_CALLS)
#: Keywords that give a registration's pattern, its view, and its endpoint name.
PATTERN_KEYWORDS = ("rule", "path")
VIEW_KEYWORDS = ("view_func", "endpoint", "handler", "view")
NAME_KEYWORDS = ("endpoint", "name")
#: Objects whose ``url_prefix=``/``prefix=`` puts a prefix before their routes.
PREFIXED = frozenset({"Blueprint", "APIRouter", "Router"})
PREFIX_KEYWORDS = ("url_prefix", "prefix")
#: Calls that turn an endpoint name into its URL, in tests.
URL_BUILDERS = frozenset({"url_for", "reverse", "reverse_lazy", "url_path_for", "resolve_url"})
#: Test-client methods whose name says the request's method (shown in reasons).
CLIENT_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "trace"})

# A pattern or a requested URL as a sequence of (character class, repeatable): a literal character, or one of these.
NOT_SLASH, ANY = "[^/]", "."
Token = tuple[str, bool]
_SEGMENT: tuple[Token, ...] = ((NOT_SLASH, False), (NOT_SLASH, True))
_TEXT: tuple[Token, ...] = ((ANY, False), (ANY, True))
_HOLE: tuple[Token, ...] = ((ANY, True),)
_PARAMETER = re.compile(r"<([^<>]*)>|\{([^{}]*)\}|(?:(?<=/)|^):(\w+)(#[^#]*#)?")


@dataclass(frozen=True)
class Route:
    """One registration: a view under a pattern, and the endpoint names ``url_for``/``reverse`` may give it."""

    pattern: str  # as written (with its module's prefix)
    path: str
    line: int
    view: frozenset[str]  # what the view may resolve to (a function's key, or a class for a class-based view)
    names: frozenset[str]
    tokens: tuple[Token, ...]  # the pattern, from its first "/"
    anywhere: bool  # whether an unresolved prefix may come before it (any but "/" and parameters alone)
    decorator: bool = False  # registered by a decorator at ``line`` (its ``decorator`` finding is this)

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """The pattern as a regular expression, to match a literal URL fast."""
        parts = [".*"] if self.anywhere else []
        for cls, star in self.tokens:
            parts.append((cls if cls in (NOT_SLASH, ANY) else re.escape(cls)) + ("*" if star else ""))
        return re.compile("".join(parts), re.S)

    def matches(self, request: Request) -> bool:
        """Whether the request may reach this route: its URL matches the pattern, or it names the endpoint.

        A URL with placeholders matches when some URL it can be matches, the route's unresolved prefix
        taken from its known text only (a placeholder is not a mount point: ``f"/a/{x}"`` does not match
        every route).
        """
        if request.endpoint is not None:
            wanted = request.endpoint
            return any(wanted == n or wanted.endswith(("." + n, ":" + n)) for n in self.names)
        if request.literal is not None:
            return self.regex.fullmatch(request.literal) is not None
        known = "".join(c for c, _ in itertools.takewhile(lambda t: not t[1], request.tokens))
        starts = [k for k, c in enumerate(known) if c == "/" and known[k:].strip("/")] if self.anywhere else [0]
        return any(_meet(self.tokens, request.tokens[k:]) for k in starts)


@dataclass(frozen=True)
class Request:
    """A URL (or an endpoint name) a test file requests: where, and what."""

    path: str
    line: int
    column: int
    statement_line: int
    enclosing: tuple[int, ...]  # `def` lines of the functions it lies in
    node_id: int
    shown: str  # for reasons: ``GET /hello``, ``/digest-auth/{…}``, ``url_for('hello')``
    literal: str | None = None  # the path of a URL without placeholders
    tokens: tuple[Token, ...] = ()  # the path of a URL with placeholders
    endpoint: str | None = None


def with_requests(tree: Tree, target: Target, found: list[Match], is_test: Callable[[str], bool]) -> list[Match]:
    """``found`` and a ``url`` finding for each request in a test file that may reach the target's routes.

    When a test requests it, the decorator that registered the route is understood: its ``decorator``
    finding goes (the requests are how the route reaches the function).
    """
    requests = _all_requests(tree, is_test)
    routes = _routes_for(tree, target) if requests else []
    if not routes:
        return found
    extra = []
    for request in requests:
        if any(route.matches(request) for route in routes):
            ref = Reference(target.key, request.path, request.line, request.column, URL, False, request.shown)
            site = Site("url", target.bare_name, request.line, request.column, request.statement_line,
                        node_id=request.node_id, enclosing=request.enclosing)
            extra.append(Match(ref, site))
    if not extra:
        return found
    registered = {(r.path, r.line) for r in routes if r.decorator}
    kept = [m for m in found if not (m.reference.kind == DECORATOR and (m.reference.path, m.reference.line)
                                     in registered)]
    return extra + kept  # first: a site's URL is what the groups show, not the word it holds


def requested(tree: Tree, path: str, line: int) -> Iterator[tuple[Request, list[Route]]]:
    """The requests inside the function defined at ``path:line`` of a test file, each with the routes it reaches."""
    requests = [r for r in _requests(tree, path) if line in r.enclosing]
    if not requests:
        return
    routes = _every_route(tree)
    for request in requests:
        reached = [r for r in routes if r.matches(request)]
        if reached:
            yield request, reached


# -- the route table --------------------------------------------------------------------------------------------

#: What a file that registers a route holds, as bytes: only such files are parsed for routes.
_REGISTERS = re.compile(
    rb"\((?:\s*(?:rule=|path=)?[rbu]*[\"']/)"  # a call whose first argument is "/...": a route decorator, Route(...)
    rb"|add_[a-z_]+\("  # add_url_rule(...), add_api_route(...), add_route(...)
    rb"|(?:path|url)\(\s*[rbu]*[\"']"  # Django's path("..."), re_path(r"..."), url(r"...")
)


def _routes_for(tree: Tree, target: Target) -> list[Route]:
    """The routes of the target's view: in its own file, or in a file that names it (a registration call)."""
    paths = dict.fromkeys([*(d.path for d in target.definitions), *tree.containing([target.bare_name])])
    return [r for path in paths for r in _file_routes(tree, path) if r.view & target.fqns]


def _every_route(tree: Tree) -> list[Route]:
    """Every route of the tree (found once)."""
    memo = tree.memo["routes"]
    if "all" not in memo:
        memo["all"] = [r for path in tree.paths for r in _file_routes(tree, path)]
    return memo["all"]  # type: ignore[return-value]


def _file_routes(tree: Tree, path: str) -> list[Route]:
    """The routes one file registers (found once; a file without the shape of a registration is not parsed)."""
    memo = tree.memo["route-files"]
    if path not in memo:
        data = tree.read(path)
        scanned = tree.file(path) if data is not None and _REGISTERS.search(data) else None
        found = []
        if scanned is not None and scanned.tree is not None:
            found = _routes_of(scanned, scanned.tree, path)
        memo[path] = found
    return memo[path]  # type: ignore[return-value]


def _routes_of(scanned: ScannedFile, module: ast.Module, path: str) -> list[Route]:
    """The routes one module registers: by decorators, and by registration calls (bound only when it has some)."""
    called = {_called(n.func) for n in ast.walk(module) if isinstance(n, ast.Call)}
    decorated, registering = bool(called & ROUTE_DECORATORS), bool(called & _REGISTRATION_NAMES)
    if not decorated and not registering:
        return []
    binder = scanned.bind()
    found = []
    prefixes = _prefixes(module)
    for info in binder.infos if decorated else ():
        for decorator in info.decorators:
            if not isinstance(decorator, ast.Call) or _called(decorator.func) not in ROUTE_DECORATORS:
                continue
            pattern = _pattern(decorator)
            if pattern is None or not pattern.startswith("/"):
                continue
            owner = decorator.func.value if isinstance(decorator.func, ast.Attribute) else None
            prefix = prefixes.get(owner.id, "") if isinstance(owner, ast.Name) else ""
            name = _keyword_string(decorator, NAME_KEYWORDS) or info.definition.key.rpartition(".")[2]
            found.append(Route(prefix + pattern, path, decorator.lineno, frozenset({info.definition.key}),
                               frozenset({name}), *_compile(prefix + pattern, "absolute"), decorator=True))
    if registering:
        found.extend(_calls(binder, module, path))
    return found


def _calls(binder: Binder, module: ast.Module, path: str) -> list[Route]:
    """Registration calls anywhere in the module, each view resolved in the scope it is named in."""
    found = []
    stack: list[tuple[ast.AST, Scope]] = [(module, binder.root)]
    while stack:
        node, scope = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Call) and _called(child.func) in _REGISTRATION_NAMES:
                route = _registration(child, scope, path)
                if route is not None:
                    found.append(route)
            stack.append((child, binder.scopes.get(id(child), scope)))
    return found


def _registration(call: ast.Call, scope: Scope, path: str) -> Route | None:
    """The route a call registers (``add_url_rule``, ``Route``, Django's ``path``...), or None."""
    called = _called(call.func)
    style = DJANGO_CALLS.get(called, "absolute" if called in REGISTRATION_CALLS else "")
    if not style:
        return None
    strings = {i: a.value for i, a in enumerate(call.args) if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    at = next((i for i, text in strings.items() if style != "absolute" or text.startswith("/")), None)
    pattern = strings[at] if at is not None else _keyword_string(call, PATTERN_KEYWORDS)
    if pattern is None or (style == "absolute" and not pattern.startswith("/")):
        return None
    view_expr = next(
        (k.value for k in call.keywords if k.arg in VIEW_KEYWORDS and not isinstance(k.value, ast.Constant)), None
    )
    if view_expr is None:
        after = call.args[(at + 1 if at is not None else 0) :]
        view_expr = next((a for a in after if isinstance(a, (ast.Name, ast.Attribute, ast.Call))), None)
    if view_expr is None:
        return None
    if isinstance(view_expr, ast.Call):  # C.as_view(): a class-based view, reached as the class
        view_expr = view_expr.func.value if isinstance(view_expr.func, ast.Attribute) else view_expr.func
    view = frozenset(dotted(view_expr, scope))
    if not view:
        return None
    name = _keyword_string(call, NAME_KEYWORDS)
    if name is None and style == "absolute":
        name = next((text for i, text in strings.items() if i != at), None)  # add_url_rule's endpoint
    names = {name} if name else {min(view).rpartition(".")[2]}
    return Route(pattern, path, call.lineno, view, frozenset(names), *_compile(pattern, style))


def _prefixes(module: ast.Module) -> dict[str, str]:
    """Module-level ``bp = Blueprint(..., url_prefix="/a")`` (or ``APIRouter(prefix=...)``): name -> prefix."""
    found = {}
    for statement in module.body:
        if not isinstance(statement, ast.Assign):
            continue
        value = statement.value
        if isinstance(value, ast.Call) and _called(value.func) in PREFIXED:
            prefix = _keyword_string(value, PREFIX_KEYWORDS)
            for target in statement.targets:
                if prefix and isinstance(target, ast.Name):
                    found[target.id] = prefix.rstrip("/")
    return found


def _called(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _pattern(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return _keyword_string(call, PATTERN_KEYWORDS)


def _keyword_string(call: ast.Call, names: tuple[str, ...]) -> str | None:
    for keyword in call.keywords:
        if keyword.arg in names and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
            return keyword.value.value
    return None


# -- patterns ---------------------------------------------------------------------------------------------------


def _compile(pattern: str, style: str) -> tuple[tuple[Token, ...], bool]:
    """A route's pattern as tokens: ``absolute`` (``/a/<x>``), Django's ``path`` (``a/<x>/``) or ``regex``.

    ``anywhere`` (an unresolved prefix may come before it) unless it is only ``/`` and parameters.
    """
    if style == "regex":
        body = _regex_tokens(pattern)
    else:
        text = pattern if style == "absolute" else "/" + pattern
        body = _parameter_tokens(_strip_slash(text))
    if style != "absolute" and body[:1] != (("/", False),):
        body = (("/", False), *body)
    return body, not all(cls in (NOT_SLASH, ANY, "/") for cls, _ in body)


def _parameter_tokens(text: str) -> tuple[Token, ...]:
    """``/a/<int:id>/{p:path}/:name`` as tokens: literal characters, a segment, or any text."""
    tokens: list[Token] = []
    at = 0
    for found in _PARAMETER.finditer(text):
        tokens.extend((c, False) for c in text[at : found.start()])
        inside = found.group(1) or found.group(2) or ""
        anything = found.group(4) or re.search(r"(^|:)(path|re)(:|$)", inside) or inside.startswith("path")
        tokens.extend(_TEXT if anything else _SEGMENT)
        at = found.end()
    tokens.extend((c, False) for c in text[at:])
    return tuple(tokens)


def _regex_tokens(regex: str) -> tuple[Token, ...]:
    """A Django regex as tokens, read loosely towards matching: a group is any text, a class one character."""
    text = regex.removeprefix("^").removesuffix("$").removesuffix(r"\Z")
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "|":
            return _HOLE  # an alternation at the top: anything
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            tokens.append((NOT_SLASH, False) if n in "dwsDWS" else (n, False))
            i += 2
        elif c == "(":
            depth, i = 1, i + 1
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 2 if text[i] == "\\" else 1
            tokens.extend(_HOLE)
        elif c == "[":
            end = text.find("]", i + 2)
            end = len(text) - 1 if end < 0 else end
            tokens.append((ANY if "/" in text[i:end] else NOT_SLASH, False))
            i = end + 1
        elif c in "*?" and tokens:
            tokens[-1] = (tokens[-1][0], True)
            i += 1
        elif c == "+" and tokens:
            tokens.append((tokens[-1][0], True))
            i += 1
        elif c == "{" and tokens:
            end = text.find("}", i)
            tokens.append((tokens[-1][0], True))
            i = len(text) if end < 0 else end + 1
        else:
            tokens.append((ANY, False) if c == "." else (c, False))
            i += 1
    stripped = tokens[:-1] if tokens[-1:] == [("/", False)] else tokens
    return tuple(stripped)


def _strip_slash(text: str) -> str:
    return text.rstrip("/") or "/"


def _meet(a: tuple[Token, ...], b: tuple[Token, ...]) -> bool:
    """Whether some text matches both token sequences (a pattern and a URL with placeholders)."""

    @functools.cache
    def go(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i][1] and go(i + 1, j):
            return True
        if j < len(b) and b[j][1] and go(i, j + 1):
            return True
        if i < len(a) and j < len(b) and not (a[i][1] and b[j][1]) and _overlap(a[i][0], b[j][0]):
            return go(i if a[i][1] else i + 1, j if b[j][1] else j + 1)
        return False

    return go(0, 0)


def _overlap(x: str, y: str) -> bool:
    """Whether one character can be of both classes."""
    if ANY in (x, y):
        return True
    if x == NOT_SLASH or y == NOT_SLASH:
        return "/" not in (x, y)
    return x == y


# -- what tests request ------------------------------------------------------------------------------------------


def _all_requests(tree: Tree, is_test: Callable[[str], bool]) -> list[Request]:
    """Every request of every test file (found once per tree)."""
    memo = tree.memo["routes"]
    if "requests" not in memo:
        memo["requests"] = [r for path in tree.paths if is_test(path) for r in _requests(tree, path)]
    return memo["requests"]  # type: ignore[return-value]


def _requests(tree: Tree, path: str) -> list[Request]:
    """The requests of one file (found once)."""
    memo = tree.memo["route-requests"]
    if path not in memo:
        data = tree.read(path)
        wanted = data is not None and (b"/" in data or b"url" in data or b"reverse" in data)  # a URL, or a builder
        scanned = tree.file(path) if wanted else None
        found: list[Request] = []
        if scanned is not None and scanned.tree is not None:
            finder = _RequestFinder(path)
            finder.visit(scanned.tree)
            found = finder.found
        memo[path] = found
    return memo[path]  # type: ignore[return-value]


class _RequestFinder(Visitor):
    """Strings and templates that are URLs, and endpoint names given to ``url_for``/``reverse``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[Request] = []
        self._enclosing: tuple[int, ...] = ()
        self._statement = 0
        self._done: set[int] = set()  # strings read as part of a template
        self._methods: dict[int, str] = {}  # id of a client call's first argument -> GET, POST...

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            outer, self._statement = self._statement, node.lineno
            super().visit(node)
            self._statement = outer
        else:
            super().visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self._enclosing = self._enclosing, (*self._enclosing, node.lineno)
        self.generic_visit(node)
        self._enclosing = outer

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        called = _called(node.func)
        first = node.args[0] if node.args else None
        if called.startswith("assert"):  # assertEqual(response.location, "/post"): an expectation
            self._done.update(id(a) for a in (*node.args, *(k.value for k in node.keywords))
                              if isinstance(a, ast.Constant))
        if called in URL_BUILDERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            self._done.add(id(first))
            self._add(first, f"{called}({first.value!r})", endpoint=first.value)
        elif first is not None and isinstance(node.func, ast.Attribute) and called in CLIENT_METHODS:
            self._methods[id(first)] = called.upper()
        if called == "format" and isinstance(node.func, ast.Attribute):
            template = node.func.value
            if isinstance(template, ast.Constant) and isinstance(template.value, str):
                self._template(node, _format_parts(template.value), template)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        # `assert response.location == "/"`: what a response should hold, not a request.
        self._done.update(id(e) for e in (node.left, *node.comparators) if isinstance(e, ast.Constant))
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        parts: list[str | None] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
                self._done.add(id(value))
            else:
                parts.append(None)
        self._template(node, parts, None)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        left = node.left
        if isinstance(left, ast.Constant) and isinstance(left.value, str):
            if isinstance(node.op, ast.Mod):
                self._template(node, _percent_parts(left.value), left)
            elif isinstance(node.op, ast.Add):
                right = node.right
                tail = right.value if isinstance(right, ast.Constant) and isinstance(right.value, str) else None
                self._template(node, [left.value, tail], left)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self._done:
            self._url(node, [node.value])

    def _template(self, node: ast.expr, parts: list[str | None], string: ast.expr | None) -> None:
        if string is not None:
            if id(string) in self._done:
                return
            self._done.add(id(string))
        self._url(node, parts)

    def _url(self, node: ast.expr, parts: list[str | None]) -> None:
        """Record ``parts`` (text, and None for each placeholder) when they make a URL."""
        path = _url_path(parts)
        if path is None:
            return
        method = self._methods.get(id(node))
        shown = "".join("{…}" if p is None else p for p in parts)  # as written
        shown = f"{method} {shown}" if method else shown
        if all(p is not None for p in path):
            self._add(node, shown, literal=_strip_slash("".join(path)))  # type: ignore[arg-type]
        else:
            tokens: list[Token] = []
            for part in path:
                tokens.extend(_HOLE if part is None else ((c, False) for c in part))
            self._add(node, shown, tokens=tuple(tokens))

    def _add(self, node: ast.expr, shown: str, **what: object) -> None:
        self.found.append(Request(self.path, node.lineno, node.col_offset, self._statement, self._enclosing,
                                  id(node), shown, **what))  # type: ignore[arg-type]


def _url_path(parts: list[str | None]) -> list[str | None] | None:
    """The path of a URL (``/a/{…}``) from its parts, without scheme, host, query and fragment; None if not a URL."""
    if not parts:
        return None
    if parts[0] is None and len(parts) > 1 and isinstance(parts[1], str) and parts[1].startswith("/"):
        parts = parts[1:]  # f"{base_url}/hello": the placeholder is the host
    first = parts[0]
    if first is None or not first:
        return None
    scheme = re.match(r"https?://[^/]*", first)
    if scheme:
        first = first[scheme.end():]
        if not first:
            if len(parts) > 1:
                return None  # the path comes from a placeholder
            first = "/"
    if not first.startswith("/") or first.startswith("//"):
        return None
    path: list[str | None] = []
    for part in [first, *parts[1:]]:
        if part is None:
            path.append(None)
            continue
        if any(c.isspace() for c in part):
            return None
        cut = re.search(r"[?#]", part)
        if cut:
            path.append(part[: cut.start()])
            break
        path.append(part)
    if None in path and not path[0].strip("/"):  # type: ignore[union-attr]
        return None  # "/" + x joins a path: it names no route
    return path


def _format_parts(text: str) -> list[str | None]:
    """``"/a/{0}/{name}"`` as parts: text, and None for each replacement field (``{{`` is a brace)."""
    parts: list[str | None] = []
    for piece in re.split(r"(\{\{|\}\}|\{[^{}]*\})", text):
        if piece in ("{{", "}}"):
            parts.append(piece[0])
        elif piece.startswith("{") and piece.endswith("}"):
            parts.append(None)
        elif piece:
            parts.append(piece)
    return parts


def _percent_parts(text: str) -> list[str | None]:
    """``"/a/%s/%(b)d"`` as parts: text, and None for each conversion (``%%`` is a percent sign)."""
    parts: list[str | None] = []
    for piece in re.split(r"(%%|%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z])", text):
        if piece == "%%":
            parts.append("%")
        elif piece.startswith("%"):
            parts.append(None)
        elif piece:
            parts.append(piece)
    return parts
