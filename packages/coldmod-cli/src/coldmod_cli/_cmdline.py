"""The strict layer over python-fire: the whole command line is understood before anything runs.

Fire runs a command with the arguments it understood and complains about the
rest afterwards (``rm --cold --dryrun`` removed code, then printed an error).
Here a command's arguments are checked against the signature of the command
(``@command`` methods) and groups (attributes holding objects with commands):
an unknown command, flag or a stray argument is one sentence naming it with the
closest valid spelling, exit 2, nothing done.

One check, in one place: :func:`check_call`, which the ``@command`` wrapper
runs on every call before the method, whoever calls it. The entry point
(``coldmod``, ``python -m coldmod_cli``) only finds the command (:func:`parse`:
the command's path, help, ``--verbose``) and calls it with the words typed;
Fire's own reading of words is lossy (a boolean flag swallows the next word,
``-`` chains calls), so the entry point does not hand them to Fire. A caller
that uses ``fire.Fire(Coldmod(), command=[...])`` directly goes through the
same wrapper, which turns what Fire read back into words first. Help is
rendered here, from the same signatures and the docstrings, so what
``--help`` shows is what the check accepts.

Fire's conventions kept: ``--flag=value`` and ``--flag value``; ``--flag_name``
as well as ``--flag-name``; ``--noflag`` turns a boolean off; a boolean flag
takes the next word as its value when that word is yes/no/true/false/on/off/1/0;
after ``--`` come Fire's own flags (only ``--help`` and ``--verbose`` here).
Short flags are the table :data:`SHORT_FLAGS` (Fire's implicit first-letter
shortcuts are not accepted: a new flag would silently change what ``-f`` means).
A new command or flag needs no registration: its signature is the definition.
"""

from __future__ import annotations

import difflib
import inspect
import re
import textwrap
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coldmod_cli._args import FALSE, TRUE
from coldmod_cli._errors import UsageError, is_command

__all__ = [
    "SHORT_FLAGS",
    "CommandLine",
    "Parameter",
    "Signature",
    "check_call",
    "children",
    "command_path",
    "help_text",
    "parse",
    "signature",
]

PROGRAM = "coldmod"

#: Short spellings: ``-n`` is ``--dry-run`` wherever a command has that flag (git's ``-n``).
SHORT_FLAGS: dict[str, str] = {
    "n": "dry_run",
}
#: Flags every command and group accepts, anywhere before ``--``.
HELP_FLAGS = frozenset({"--help", "-h"})
VERBOSE_FLAGS = frozenset({"--verbose", "-v"})
#: ``coldmod --version`` is ``coldmod version``, as in git, ruff and coverage.
VERSION_FLAGS = frozenset({"--version", "-V"})
_WIDTH = 80


def is_flag(token: str) -> bool:
    """Fire's test for a flag: ``--anything``, or ``-`` and a letter (``-5`` is a value)."""
    return token.startswith("--") or re.match(r"^-[A-Za-z]", token) is not None


def spelled(name: str) -> str:
    """A parameter as users type it: ``dry_run`` → ``--dry-run``; ``from_`` (a Python keyword's escape) → ``--from``."""
    return "--" + name.rstrip("_").replace("_", "-")


def _by_name(spec: Signature) -> dict[str, Parameter]:
    """The flags by parameter name, and by the name typed for a keyword's escape (``from`` for ``from_``)."""
    by_name = {p.name: p for p in spec.flags}
    return by_name | {p.name.rstrip("_"): p for p in spec.flags if p.name.endswith("_")}


@dataclass(frozen=True)
class Parameter:
    """One parameter of a command, as the command line sees it."""

    name: str
    kind: inspect._ParameterKind
    default: Any
    boolean: bool
    choices: tuple[str, ...]
    metavar: str
    help: str

    @property
    def flag(self) -> str:
        """The long spelling, ``--dry-run``."""
        return spelled(self.name)

    @property
    def short(self) -> str | None:
        """The short spelling from :data:`SHORT_FLAGS`, like ``-n``."""
        return next((f"-{s}" for s, name in SHORT_FLAGS.items() if name == self.name), None)

    @property
    def positional(self) -> bool:
        """May be given by position (``coldmod connect URL``); keyword-only parameters are flags only."""
        return self.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)

    @property
    def required(self) -> bool:
        """A positional parameter without a default."""
        return self.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class Signature:
    """A command's parameters and its help text, from the method's signature and docstring."""

    path: tuple[str, ...]
    summary: str
    description: str
    parameters: tuple[Parameter, ...]

    @property
    def varargs(self) -> Parameter | None:
        """The ``*keys`` parameter, if any."""
        return next((p for p in self.parameters if p.kind == inspect.Parameter.VAR_POSITIONAL), None)

    @property
    def flags(self) -> tuple[Parameter, ...]:
        """The parameters that can be given as ``--name``."""
        return tuple(p for p in self.parameters if p.kind != inspect.Parameter.VAR_POSITIONAL)


def children(group: object) -> dict[str, object]:
    """The commands (bound ``@command`` methods) and groups (objects holding commands) of ``group``."""
    found: dict[str, object] = {}
    for name in dir(type(group)):
        if not name.startswith("_") and is_command(inspect.getattr_static(type(group), name)):
            found[name] = getattr(group, name)
    for name, value in vars(group).items():
        if not name.startswith("_") and not callable(value) and any(is_command(v) for v in vars(type(value)).values()):
            found[name] = value
    return dict(sorted(found.items()))


def _metavar(name: str, hint: Any) -> tuple[str, tuple[str, ...]]:
    """``(METAVAR, choices)`` from an annotation: ``Literal`` gives choices, ``Annotated[..., "X"]`` a name."""
    if typing.get_origin(hint) is typing.Annotated:
        base, choices = _metavar(name, typing.get_args(hint)[0])
        named = [m for m in hint.__metadata__ if isinstance(m, str)]
        return (named[0] if named else base), choices
    if typing.get_origin(hint) is typing.Literal:
        choices = tuple(str(c) for c in typing.get_args(hint))
        return "|".join(choices), choices
    return name.upper().replace("_", "-"), ()


def signature(command: Callable[..., Any], path: Sequence[str]) -> Signature:
    """The :class:`Signature` of a command method (bound or not)."""
    import fire.docstrings

    function = inspect.unwrap(getattr(command, "__func__", command))
    docs = fire.docstrings.parse(inspect.getdoc(function) or "")
    described = {arg.name: (arg.description or "") for arg in docs.args or []}
    hints = typing.get_type_hints(function, include_extras=True)
    parameters = []
    for param in list(inspect.signature(function).parameters.values())[1:]:  # drop self
        if param.kind == inspect.Parameter.VAR_KEYWORD:
            continue
        hint = hints.get(param.name, Any)
        boolean = hint is bool or isinstance(param.default, bool)
        metavar, choices = _metavar(param.name, hint)
        if param.kind == inspect.Parameter.VAR_POSITIONAL and metavar == param.name.upper():
            metavar = metavar.removesuffix("S")  # *keys: KEY ...
        parameters.append(
            Parameter(param.name, param.kind, param.default, boolean, choices, metavar, described.get(param.name, ""))
        )
    return Signature(tuple(path), docs.summary or "", docs.description or "", tuple(parameters))


@dataclass
class CommandLine:
    """What the command line asks for, once understood."""

    path: tuple[str, ...] = ()
    #: The words after the command's path, as typed (help and verbose flags taken out): what
    #: the command is called with, and what :func:`check_call` checks.
    words: list[str] = field(default_factory=list)
    help: bool = False
    verbose: bool = False


def _closest(word: str, candidates: Sequence[str]) -> str | None:
    """The valid spelling ``word`` most likely meant, if any is close."""
    stem = word.lstrip("-")
    prefixed = [c for c in candidates if c.lstrip("-").startswith(stem) and stem]
    if len(prefixed) == 1:
        return prefixed[0]
    by_stem = {c.lstrip("-"): c for c in candidates}
    close = difflib.get_close_matches(stem, list(by_stem), n=1, cutoff=0.6)
    return by_stem[close[0]] if close else None


def _did_you_mean(word: str, spec: Signature) -> str:
    """``; did you mean X?`` or, without a close one, the list of the command's flags."""
    if word.startswith("--no-") and f"--{word[5:]}" in _spellings(spec, negations=False):
        # git-style negation: say how to get what was meant, not a spelling that acts at once.
        return f"; --{word[5:]} is off unless given, so leave it out (Fire's negation is --no{word[5:]})"
    best = _closest(word, _spellings(spec, negations=True))
    if best:
        return f"; did you mean {best}?"
    listed = _spellings(spec, negations=False)
    if not listed:
        return f"; {_where(spec.path)} takes no flags but --help and --verbose"
    return f"; {_where(spec.path)} takes {', '.join(listed)}"


def _where(path: Sequence[str]) -> str:
    """A command as typed, in backquotes: `` `coldmod cache warm` ``."""
    return "`" + " ".join((PROGRAM, *path)) + "`"


def _is_command(node: object) -> bool:
    """True for a bound command method (a leaf of the tree), False for a group."""
    return is_command(getattr(node, "__func__", None))


def _child(node: object, walked: Sequence[str], name: str, *, asking: str = "") -> object:
    """The command or group ``name`` under ``node``; :class:`UsageError` with the closest name when there is none."""
    commands = {} if _is_command(node) else children(node)
    if name in commands:
        return commands[name]
    best = _closest(" ".join((*walked, name)), [" ".join((*walked, n)) for n in commands])
    prefix = " ".join(p for p in (PROGRAM, asking) if p)
    hint = f"; did you mean `{prefix} {best}`?" if best else f"; the commands are {', '.join(commands)}"
    raise UsageError(f"unknown command {' '.join((*walked, name))!r}{hint}")


def parse(root: object, argv: Sequence[str]) -> CommandLine:
    """Find the command the command line names under ``root`` (its arguments are the command's to check).

    :class:`UsageError` for an unknown command or group, a flag before the
    command, or a word after ``--`` other than Fire's flags.
    """
    args = list(argv)
    line = CommandLine()
    end = args.index("--") if "--" in args else len(args)
    for token in args[end + 1 :]:  # Fire's own flags
        if token in HELP_FLAGS:
            line.help = True
        elif token in VERBOSE_FLAGS:
            line.verbose = True
        else:
            raise UsageError(f"{token!r} after --: only --help and --verbose go there; put it before --")
    tokens = []
    for token in args[:end]:
        if token in HELP_FLAGS:
            line.help = True
        elif token in VERBOSE_FLAGS:
            line.verbose = True
        else:
            tokens.append(token)
    if tokens and tokens[0] in VERSION_FLAGS and "version" in children(root):
        tokens[0] = "version"
    node: object = root
    path: list[str] = []
    while not _is_command(node):
        if not tokens:
            line.path, line.help = tuple(path), True  # a group alone: its help
            return line
        head = tokens.pop(0)
        if is_flag(head):
            usage = " ".join((PROGRAM, *path, "COMMAND", head))
            raise UsageError(f"unknown flag {head} before the command; flags go after it: `{usage}`")
        node = _child(node, path, head)
        path.append(head)
    line.path, line.words = tuple(path), tokens
    return line


def check_call(spec: Signature, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The one check of a command's arguments: ``(varargs, keywords)`` to call it with, or :class:`UsageError`.

    From the entry point every word arrives in ``args``, as typed. Through
    ``fire.Fire`` the words were read against a catch-all signature, so every
    flag arrives in ``kwargs`` (``dry_run``, ``n``, a typo) and every other
    word in ``args``; they are turned back into flags and checked alike.
    """
    by_name = _by_name(spec)
    tokens: list[str] = []
    words = [a if isinstance(a, str) else str(a) for a in args]
    for key, value in kwargs.items():
        if value is None:  # a Python caller's default
            continue
        param = by_name.get(SHORT_FLAGS.get(key, key))
        negated = by_name.get("no" + key)
        if param is None and negated is not None and negated.boolean and str(value) == "False":
            param, value = negated, "true"  # Fire reads a bare `--no_open` as `--no` + `_open`
        if param is None:
            # Fire turned a bare `--no-x` into x=False: name the flag as it was typed.
            word = spelled("no" + key if str(value) == "False" else key)
            raise UsageError(f"unknown flag {word}{_did_you_mean(word, spec)}")
        elif param.boolean and str(value).strip().lower() not in TRUE | FALSE:
            tokens.append(param.flag)  # Fire gave a boolean flag the next word: it is an argument
            words.append(str(value))
        else:
            tokens.append(f"{param.flag}={value}")
    values, positionals = _read_flags(spec, tokens + words)
    return _assign(spec, values, positionals), dict(values)


def command_path(instance: object, method: Callable[..., Any]) -> tuple[str, ...]:
    """The words that name ``method`` of ``instance`` on the command line: ``("rm",)``, ``("cache", "warm")``."""
    from coldmod_cli.cli import Coldmod

    if not isinstance(instance, Coldmod):
        for name, group in children(Coldmod()).items():
            if type(group) is type(instance):
                return name, method.__name__
    return (method.__name__,)


def help_for(instance: object, method: Callable[..., Any]) -> str:
    """The help of ``method`` when Fire is asked for it directly (``fire.Fire(Coldmod(), command=[..., "--help"])``)."""
    return _command_help(signature(method, command_path(instance, method)))


def _flag_named(spec: Signature, token: str) -> tuple[Parameter, bool] | None:
    """The parameter a flag token names and whether it is negated (``--noflag``), else None."""
    key = token[2:].replace("-", "_") if token.startswith("--") else SHORT_FLAGS.get(token[1:], "")
    by_name = _by_name(spec)
    if key in by_name:
        return by_name[key], False
    if key.startswith("no") and key[2:] in by_name and by_name[key[2:]].boolean and token.startswith("--"):
        return by_name[key[2:]], True
    return None


def _spellings(spec: Signature, *, negations: bool) -> list[str]:
    """Every valid spelling of the command's flags (with ``--noflag`` for its booleans when ``negations``)."""
    out = []
    for p in spec.flags:
        out += [s for s in (p.flag, p.short) if s]
        if negations and p.boolean:
            out.append(f"--no{p.flag[2:]}")
    return out


def _read_flags(spec: Signature, tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    """Flags to ``{name: value}`` and the positional words, in order; refuses anything unknown."""
    values: dict[str, str] = {}
    positionals: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not is_flag(token):
            positionals.append(token)
            continue
        word, has_value, value = token.partition("=")
        named = _flag_named(spec, word)
        if named is None:
            raise UsageError(f"unknown flag {word}{_did_you_mean(word, spec)}")
        param, negated = named
        if param.name in values:
            raise UsageError(f"{param.flag} is given twice; give it once")
        if param.boolean:
            if negated and has_value:
                raise UsageError(f"{word} takes no value")
            if negated:
                value = "false"
            elif not has_value:
                following = tokens[index].strip().lower() if index < len(tokens) else ""
                value = "true"
                if following in TRUE | FALSE:  # Fire's convention: a boolean flag takes a yes/no word
                    value, index = following, index + 1
            if value.strip().lower() not in TRUE | FALSE:
                raise UsageError(f"{param.flag} takes no value (or yes/no), not {value!r}")
            value = "true" if value.strip().lower() in TRUE else "false"
        else:
            if negated:
                raise UsageError(f"unknown flag {word}{_did_you_mean(word, spec)}")
            if not has_value:
                if index >= len(tokens) or is_flag(tokens[index]):
                    raise UsageError(f"{param.flag} needs a value ({param.metavar})")
                value = tokens[index]
                index += 1
            if param.choices and value.strip().lower() not in param.choices:
                raise UsageError(f"{param.flag} must be {' or '.join(param.choices)}, not {value!r}")
        values[param.name] = value
    return values, positionals


def _assign(spec: Signature, values: dict[str, str], positionals: list[str]) -> list[str]:
    """Give the positional words to the positional parameters; refuses strays; returns Fire's varargs."""
    words = list(positionals)
    for param in spec.parameters:
        if param.kind != inspect.Parameter.POSITIONAL_OR_KEYWORD or param.name in values:
            continue
        if words:
            values[param.name] = words.pop(0)
        elif param.required:
            raise UsageError(f"{_where(spec.path)} needs {param.metavar}; see `{PROGRAM} help {' '.join(spec.path)}`")
    if words and spec.varargs is None:
        stray = words[0]
        flag = _closest("--" + stray, _spellings(spec, negations=False))
        hint = f"; did you mean {flag}?" if flag else ""
        takes = "no arguments" if not any(p.positional for p in spec.parameters) else "no more arguments"
        raise UsageError(f"unexpected argument {stray!r}: {_where(spec.path)} takes {takes}{hint}")
    if spec.varargs is not None:
        for word in words:
            if word == "-":  # Fire's chaining separator would swallow it
                raise UsageError(f"{word!r} is not a valid {spec.varargs.metavar}")
    return words


# ---------------------------------------------------------------------------------------------- help


def _wrap(text: str, indent: int) -> list[str]:
    """``text`` as lines that fit the help's width after ``indent`` columns."""
    return textwrap.wrap(" ".join(text.split()), width=_WIDTH - indent) or [""]


def _table(rows: list[tuple[str, str]]) -> list[str]:
    """Two columns, the second wrapped and aligned."""
    width = min(max((len(left) for left, _ in rows), default=0) + 2, 28)
    out = []
    for left, right in rows:
        wrapped = _wrap(right, 2 + width)
        if len(left) + 2 > width:
            out.append(f"  {left}")
            out.extend(f"  {'':<{width}}{part}" for part in wrapped)
        else:
            out.append(f"  {left:<{width}}{wrapped[0]}")
            out.extend(f"  {'':<{width}}{part}" for part in wrapped[1:])
    return out


def _paragraphs(text: str) -> list[str]:
    """A docstring's description, each paragraph rewrapped, a blank line after each."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        if paragraph.strip():
            out.extend(_wrap(paragraph, 0))
            out.append("")
    return out


def _usage_flag(param: Parameter) -> str:
    """A flag in the usage line: ``[-n]``, ``[--since DURATION]``."""
    spelling = param.short or param.flag
    return f"[{spelling}]" if param.boolean else f"[{param.flag} {param.metavar}]"


def _flag_row(param: Parameter) -> tuple[str, str]:
    """A flag's row in the options table: its spellings and value, then its help and default."""
    left = ", ".join(s for s in (param.short, param.flag) if s)
    if not param.short:
        left = "    " + left
    if not param.boolean:
        left += f" {param.metavar}"
    text = param.help
    if not param.boolean and param.default not in (None, "", inspect.Parameter.empty) and "default" not in text:
        text = f"{text.rstrip('.')} (default: {param.default})."
    return left, text


def _command_help(spec: Signature) -> str:
    """The help of one command: usage, docstring, arguments, options."""
    usage = [PROGRAM, *spec.path]
    for param in spec.parameters:
        if param.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
            usage.append(param.metavar if param.required else f"[{param.metavar}]")
        elif param.kind == inspect.Parameter.VAR_POSITIONAL:
            usage.append(f"[{param.metavar} ...]")
    usage.extend(_usage_flag(p) for p in spec.flags if p.kind == inspect.Parameter.KEYWORD_ONLY)
    lines = ["usage: " + " ".join(usage), "", *_wrap(spec.summary, 0), ""]
    lines.extend(_paragraphs(spec.description))
    positional = [p for p in spec.parameters if p.positional]
    if positional:
        lines.append("arguments:")
        lines.extend(_table([(p.metavar + (" ..." if p.kind == inspect.Parameter.VAR_POSITIONAL else ""), p.help)
                             for p in positional]))  # fmt: skip
        lines.append("")
    lines.append("options:")
    rows = [_flag_row(p) for p in spec.flags if not p.positional]  # positional ones are under arguments
    rows += [("-h, --help", "show this help and exit."), ("-v, --verbose", "show a traceback when the command fails.")]
    lines.extend(_table(rows))
    return "\n".join(lines) + "\n"


def _group_help(group: object, path: Sequence[str]) -> str:
    """The help of a group (or the program): usage, docstring, its commands, the global options."""
    docs = inspect.getdoc(type(group)) or ""
    summary, _, rest = docs.partition("\n")
    rows = []
    for name, child in children(group).items():
        if _is_command(child):
            rows.append((name, signature(child, (*path, name)).summary))  # type: ignore[arg-type]
        else:
            text = (inspect.getdoc(type(child)) or "").partition("\n")[0]
            rows.append((f"{name} ...", text))
    where = " ".join((PROGRAM, *path))
    lines = [f"usage: {where} COMMAND [ARGS] [--help]", "", *_wrap(summary, 0), ""]
    lines.extend(_paragraphs(rest))
    lines.append("commands:")
    lines.extend(_table(rows))
    flags = [("-h, --help", "show this help and exit."), ("-v, --verbose", "show a traceback when a command fails.")]
    if not path and "version" in children(group):
        flags.append(("-V, --version", "print the version and exit (as `coldmod version`)."))
    lines += ["", "options:", *_table(flags)]
    asking = " ".join((PROGRAM, "help", *path, "COMMAND"))
    lines += ["", f"`{where} COMMAND --help` (or `{asking}`) shows a command's flags."]
    return "\n".join(lines) + "\n"


def help_text(root: object, path: Sequence[str]) -> str:
    """The help of the command or group at ``path`` (``()`` is the whole program)."""
    node: object = root
    walked: list[str] = []
    for name in path:
        node = _child(node, walked, name, asking="help")
        walked.append(name)
    if _is_command(node):
        return _command_help(signature(node, walked))  # type: ignore[arg-type]
    return _group_help(node, walked)
