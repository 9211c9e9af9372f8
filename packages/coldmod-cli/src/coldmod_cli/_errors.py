"""User errors and how a command ends: one sentence on stderr and an exit code, never a traceback.

Exit codes: 0 success, 1 failure (including every user error), 2 usage (a bad
flag or argument value; Fire itself also exits 2 for arguments it cannot use).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import traceback
import types
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import fire

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A problem the user can fix; ``str(error)`` is the one sentence saying what to do."""

    code = EXIT_FAILURE


class UsageError(CliError):
    """A flag or argument has a value the command cannot use."""

    code = EXIT_USAGE


def say(message: str) -> None:
    """A diagnostic line on stderr, prefixed with the program name."""
    print(f"coldmod: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning on stderr."""
    say(f"warning: {message}")


def _message(exc: BaseException) -> tuple[str, int] | None:
    """The one sentence and exit code for an exception a user can cause, else None."""
    from coldmod_trace.config import ConfigError
    from coldmod_trace.rootmarker import RootmarkerError

    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, (RootmarkerError, ConfigError)):
        return str(exc), EXIT_FAILURE
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio is a dependency of coldmod-trace
        return None
    if isinstance(exc, grpc.RpcError):
        from coldmod_cli.client import explain_rpc_error

        return explain_rpc_error(exc), EXIT_FAILURE
    return None


def command(method: F) -> F:
    """Make a method a command: arguments arrive as strings, errors end it with one line and a code."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> None:
        # Every caller ends here: the entry point with the words as typed, fire.Fire with what it
        # read (the signature it sees is *args, **kwargs: see _Command), Python code with its
        # arguments. The one check of a command's arguments runs here, before the method.
        verbose = bool(getattr(self, "_verbose", False)) or bool({"verbose", "v"} & kwargs.keys())
        kwargs = {k: v for k, v in kwargs.items() if k not in ("verbose", "v")}
        try:
            from coldmod_cli import _cmdline

            if {"help", "h"} & kwargs.keys():
                sys.stdout.write(_cmdline.help_for(self, method))
                return
            spec = _cmdline.signature(method, _cmdline.command_path(self, method))
            varargs, keywords = _cmdline.check_call(spec, args, kwargs)
            with warnings.catch_warnings():
                # Parsing the application's files (discovery, line counts, the codemod) makes Python
                # report *their* SyntaxWarnings (`"\d"` in a string): the app's business, not ours.
                warnings.simplefilter("ignore", SyntaxWarning)
                method(self, *varargs, **keywords)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): not an error; silence the final flush.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(EXIT_OK) from None
        except KeyboardInterrupt:
            say("interrupted")
            raise SystemExit(130) from None
        except (SystemExit, fire.core.FireExit):
            raise
        except Exception as exc:
            explained = _message(exc)
            if verbose:
                traceback.print_exc()
            if explained is None:
                say(f"internal error ({type(exc).__name__}: {exc}); please report it with the output of --verbose")
                raise SystemExit(EXIT_FAILURE) from None
            text, code = explained
            say(text)
            raise SystemExit(code) from None

    return _Command(run)  # type: ignore[return-value]


_CATCH_ALL = inspect.Signature(
    [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
)


def is_command(value: object) -> bool:
    """True for a method made a command by :func:`command` (what the command line may call)."""
    return isinstance(value, _Command)


class _Command:
    """A command method whose arguments Fire hands over as the strings typed.

    Fire converts arguments by their look (``1,2`` is a tuple, ``2024-01-01`` an
    int, ``True`` a bool); each command converts its own strings instead. Fire's
    own ``SetParseFn`` would do it too, but its metadata attribute then shows up
    as a bogus group in ``--help``; served from ``__getattr__`` it stays hidden.
    """

    _METADATA: ClassVar[dict[str, Any]] = {
        fire.decorators.FIRE_PARSE_FNS: {"default": str, "positional": (), "named": {}},
        fire.decorators.ACCEPTS_POSITIONAL_ARGS: True,
    }

    def __init__(self, function: Callable[..., None]) -> None:
        functools.update_wrapper(self, function)
        self._function = function
        # What Fire sees: every flag and word reaches the wrapper, which checks them all before
        # running anything (Fire itself would run the command, then complain about the rest).
        self.__signature__ = _CATCH_ALL

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._function(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else types.MethodType(self, instance)

    def __getattr__(self, name: str) -> Any:
        if name == fire.decorators.FIRE_METADATA:
            return self._METADATA
        raise AttributeError(name)
