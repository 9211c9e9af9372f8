"""The ``coldmod`` commands: a python-fire class whose methods are the commands.

Every command prints what it means to print and returns None (a returned
object would make Fire page its help); data goes to stdout, diagnostics to
stderr. Arguments arrive as strings and each command converts its own (see
:mod:`coldmod_cli._args`). Exit codes: 0 success, 1 failure, 2 usage.

A command is a method decorated with ``@command``; a group is an attribute
holding an object with such methods. Its signature is the whole definition the
command line is checked against before anything runs (:mod:`coldmod_cli._cmdline`):
parameters after ``*`` are flags only, ``bool`` ones take no value, a
``Literal`` lists the accepted values, ``Annotated[..., "NAME"]`` names the
value in the help, and the docstring's ``Args:`` section is each flag's help.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Literal

from coldmod_cli import _args, local, report
from coldmod_cli._errors import CliError, UsageError, command, say
from coldmod_cli._words import plural

__all__ = ["Cache", "Coldmod"]

#: ``--format``: what the data commands print.
Format = Literal["text", "json"]
#: A period like 30d, 12h, 15m or 2w (see :func:`coldmod_cli._args.duration`).
Duration = Annotated[str | None, "DURATION"]
HostPort = Annotated[str | None, "HOST:PORT"]


class Cache:
    """The discovery cache (.coldmod-cache under the root): warm it at build time, or clear it."""

    def __init__(self, verbose: bool = False) -> None:
        """A command group; ``verbose`` shows tracebacks."""
        self._verbose = verbose

    @command
    def warm(self) -> None:
        """Parse every traced file now and cache the result, so traced processes start fast.

        Run it where the image is built (after copying the source), with the
        Python the application runs on: the cache is per Python version.
        """
        from coldmod_trace.discovery import CACHE_DIR

        found = local.checkout()
        counted = f"{plural(len(found.sources), 'function')} from {plural(len(found.files), 'file')}"
        say(f"cached {counted} in {found.marker.root / CACHE_DIR}")

    @command
    def clear(self) -> None:
        """Delete the .coldmod-cache directory under the root (it is rebuilt on the next start)."""
        from coldmod_trace.discovery import CACHE_DIR
        from coldmod_trace.rootmarker import load

        marker = load()
        path = marker.root / CACHE_DIR
        if not path.exists():
            say(f"no cache at {path}; nothing to clear")
            return
        shutil.rmtree(path)
        say(f"removed {path}")


class Stores:
    """Heatmap stores: copy heatmaps between SQLite and Redis."""

    def __init__(self, verbose: bool = False) -> None:
        """A command group; ``verbose`` shows tracebacks."""
        self._verbose = verbose

    @command
    def copy(self, src: Annotated[str, "SRC"], dst: Annotated[str, "DST"]) -> None:
        """Make every app of the store SRC the same in DST (SQLite to Redis and back); running it again changes nothing.

        Stop the collectors of both stores first (a running collector holds its
        SQLite file). Apps only in DST stay. The Redis password comes from
        COLDMOD_REDIS_PASSWORD, never from the command line.

        Args:
          src: the store to read, a URL like sqlite:///var/lib/coldmod.db.
          dst: the store to write, a URL like redis://redis.internal:6379/0.
        """
        from coldmod_cli.server.store import StoreError
        from coldmod_cli.server.store_copy import copy

        try:
            copied = copy(
                src, dst, progress=lambda c: say(f"copied {c.app}: {plural(c.keys, 'key')}, {plural(c.calls, 'call')}")
            )
        except StoreError as exc:
            raise CliError(str(exc)) from None
        say(f"{plural(len(copied), 'app')} copied; the destination now holds the same heatmaps for them")


class Apps:
    """The apps a collector keeps: list them, or delete one with its heatmap."""

    def __init__(self, verbose: bool = False) -> None:
        """A command group; ``verbose`` shows tracebacks."""
        self._verbose = verbose

    @command
    def list(self, *, format: Format = "text") -> None:
        """List every app the collector keeps: functions, cold functions, calls, last update.

        Args:
          format: text or json.
        """
        from coldmod_cli import client, heatmap

        apps = client.list_apps().apps
        if _args.output_format(format) == "json":
            report.print_json(
                [
                    {"app": a.app, "functions": a.keys, "cold": a.cold_keys, "calls": a.calls,
                     "updated": heatmap.iso(a.updated_ms)}
                    for a in apps
                ]
            )
            return
        rows = [("APP", "FUNCTIONS", "COLD", "CALLS", "UPDATED")] + [
            (a.app, str(a.keys), str(a.cold_keys), str(a.calls), heatmap.ago(a.updated_ms, heatmap.now_ms()))
            for a in apps
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}")

    @command
    def delete(self, name: Annotated[str, "NAME"]) -> None:
        """Delete the app NAME and its heatmap from the collector (needs the API key; insecure: this machine only).

        A process of the app that registers again starts a new, empty heatmap.

        Args:
          name: the app's name, as `coldmod apps list` shows it.
        """
        from coldmod_cli import client

        keys = client.delete_app(str(name))
        say(f"deleted the app {name!r} and the heatmap of its {plural(keys, 'function')}")


class Coldmod:
    """Coldmod finds functions that never run in production and removes them.

    Run the commands from your application's root (the directory holding
    coldmod.rootmarker) or below it. The collector is found through
    COLDMOD_GRPC_HOST, with COLDMOD_API_KEY (or COLDMOD_INSECURE=on for a
    development collector). Exit codes: 0 success, 1 failure, 2 usage.
    Add --verbose to any command to see a traceback when it fails.
    """

    def __init__(self, verbose: bool = False) -> None:
        """The commands; ``--verbose`` shows a traceback when one fails."""
        self._verbose = _args.flag("verbose", verbose)
        self.cache = Cache(self._verbose)
        self.apps = Apps(self._verbose)
        self.store = Stores(self._verbose)

    @command
    def help(self, *command: str) -> None:
        """Print the help of the program, or of a command (`coldmod help rm`, `coldmod help cache warm`).

        Args:
          command: the command (and subcommand) to explain.
        """
        from coldmod_cli._cmdline import help_text

        print(help_text(self, command), end="")

    @command
    def version(self, *, format: Format = "text") -> None:
        """Print the version of coldmod-cli (json: every Coldmod distribution installed, and Python).

        Args:
          format: text (the version alone) or json.
        """
        import platform
        from importlib import metadata

        from coldmod_cli import __version__

        if _args.output_format(format) == "json":
            versions: dict[str, str | None] = {"version": __version__}
            for name in ("coldmod-cli", "coldmod-trace", "coldmod-codemod"):
                try:
                    versions[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    versions[name] = None
            versions["python"] = platform.python_version()
            report.print_json(versions)
            return
        print(__version__)

    @command
    def init(self, *, nested: bool = False) -> None:
        """Write a coldmod.rootmarker here, ignoring the tests, migrations and virtualenvs found.

        Refuses to overwrite an existing rootmarker, and to start a new root
        inside an existing one unless --nested.

        Args:
          nested: make this directory a separate root even though a parent directory is one.
        """
        path = local_init(Path.cwd(), nested=_args.flag("nested", nested))
        say(f"wrote {path}; review its [ignore] section, then `coldmod files` shows what will be traced")

    @command
    def files(self, *, format: Format = "text") -> None:
        """Print the root-relative paths of the files that will be parsed for functions.

        Args:
          format: text (one path per line) or json (a list of paths).
        """
        fmt = _args.output_format(format)
        found = local.checkout()
        if fmt == "json":
            report.print_json(found.files)
            return
        for path in found.files:
            print(path)

    @command
    def srcs(self, *, format: Format = "text") -> None:
        """Print every function that will be traced: its path:line and its key, sorted by file and line.

        Args:
          format: text (path:line and key per line) or json (a list of {key, path, lines}).
        """
        fmt = _args.output_format(format)
        found = local.checkout()
        from coldmod_trace.discovery import in_file_order

        sources = in_file_order(found.sources.values())  # the order of `coldmod-trace srcs` too
        if fmt == "json":
            report.print_json([{"key": s.key, "path": s.path, "lines": list(s.lines)} for s in sources])
            return
        locations = [f"{s.path}:{s.lines[0]}" for s in sources]
        width = max((len(loc) for loc in locations), default=0)
        for location, source in zip(locations, sources, strict=True):
            print(f"{location:<{width}}  {source.key}")

    @command
    def fetch(self, *, format: Format = "text") -> None:
        """Print the collector's heatmap for this checkout: calls and last call of every function.

        Keys the collector has but this checkout does not are skipped (their
        number is said on stderr); functions the collector has not seen yet are
        shown as untracked.

        Args:
          format: text (a table) or json (see the README for the shape).
        """
        fmt = _args.output_format(format)
        report.fetch(report.load(), fmt)

    @command
    def cold(self, *, since: Duration = None, min_tracked: Duration = None, format: Format = "text") -> None:
        """Print the cold functions, sorted by file and line, with a summary on stderr.

        A function is cold when it was never called since it was first traced,
        or, with --since, when it was not called within that period.

        Args:
          since: a period like 30d, 12h or 2w; functions not called within it are cold too.
          min_tracked: only functions traced at least this long (like 7d) count; younger ones are left out.
          format: text (a table) or json (see the README for the shape).
        """
        since_s = _args.duration("since", since)
        min_tracked_s = _args.duration("min-tracked", min_tracked)
        fmt = _args.output_format(format)
        report.cold(report.load(), fmt, since=since_s, min_tracked=min_tracked_s)

    @command
    def rm(
        self,
        *keys: str,
        dry_run: bool = False,
        force: bool = False,
        cold: bool = False,
        since: Duration = None,
        min_tracked: Duration = None,
        include: Literal["safe", "test-only", "review"] = "safe",
        allow_dirty: bool = False,
        format: Format = "text",
    ) -> None:
        """Remove functions with the codemod: prints each verdict (safe, test-only, review, unsafe) and why.

        Only safe functions are removed unless asked: --include test-only takes
        the ones only tests use, with the tests that exist only for them;
        --include review takes the review ones too; unsafe keys named here are
        refused (exit 1) unless --force. Other test code is never removed. A dry
        run says how many more each wider --include would remove. Writes only on
        a git work tree with no uncommitted changes to tracked files, unless
        --allow-dirty.

        Args:
          keys: function keys, like shop.cart.Cart.add (`coldmod srcs` lists them).
          dry_run: print the verdicts and the unified diff, and change nothing.
          force: remove the named unsafe keys too; each statement still referring to one gets a TODO comment.
          cold: also remove the cold functions, once the heatmap has been tracked for --min-tracked.
          since: with --cold, as for `coldmod cold`: not called within this period (like 30d).
          min_tracked: with --cold, how long the heatmap must have been tracked (default 7d, like 30d or 12h).
          include: test-only (with their tests) or review (and test-only), to remove more than the safe ones.
          allow_dirty: write even with uncommitted changes, or outside git.
          format: text (verdicts, reasons and the diff) or json (see docs/verdicts.md for the shape).
        """
        from coldmod_cli import removal

        dry, swallowed = _args.split_flag("dry-run", dry_run)
        forced, swallowed2 = _args.split_flag("force", force)
        with_cold, swallowed3 = _args.split_flag("cold", cold)
        dirty_ok, swallowed4 = _args.split_flag("allow-dirty", allow_dirty)
        # A bare flag before a key takes the key as its value (Fire); it is still a key.
        wanted = _args.keys([*keys, *swallowed, *swallowed2, *swallowed3, *swallowed4])
        since_s = _args.duration("since", since)
        min_tracked_s = _args.duration("min-tracked", min_tracked)
        verdicts = removal.include_option(include)
        fmt = _args.output_format(format)
        if not wanted and not with_cold:
            raise UsageError("name at least one key, or --cold; `coldmod cold` lists the cold functions")
        if (since_s is not None or min_tracked_s is not None) and not with_cold:
            raise UsageError("--since and --min-tracked only apply with --cold")
        if forced and with_cold:
            raise UsageError("--force applies to keys named one by one; it cannot be combined with --cold")
        found = local.checkout()
        local.require_keys(found, wanted, what="remove")
        cold_keys: list[str] = []
        calls: dict[str, int] = {}
        if with_cold:
            loaded = report.load()
            cold_keys = removal.cold_keys(loaded, since=since_s, min_tracked=min_tracked_s)
            calls = removal.production_calls(loaded)
        removal.remove(
            found, wanted, cold_keys, dry_run=dry, force=forced, include=verdicts, allow_dirty=dirty_ok,
            calls=calls, fmt=fmt,
        )

    @command
    def ignore(self, *keys: str) -> None:
        """Add functions to [ignore] keys in coldmod.rootmarker, keeping the file's comments and layout.

        The next start of the traced application drops them from the heatmap.

        Args:
          keys: function keys, like shop.cart.Cart.add (`coldmod srcs` lists them).
        """
        from coldmod_cli import markerfile

        wanted = _args.keys(keys)
        if not wanted:
            raise UsageError("name at least one key to ignore; `coldmod srcs` lists them")
        found = local.checkout()
        already = [k for k in wanted if k in found.marker.ignore_keys]
        local.require_keys(found, [k for k in wanted if k not in already], what="ignore")
        added = markerfile.add_ignore_keys(found.marker.path, wanted)
        for key in added:
            print(key)
        if already:
            say(f"already ignored: {', '.join(already)}")
        if added:
            say(
                f"added {plural(len(added), 'key')} to [ignore] keys in {found.marker.path}; "
                f"they leave the heatmap when the application next starts"
            )

    @command
    def serve(
        self,
        *,
        grpc_host: HostPort = None,
        web_host: HostPort = None,
        store: Annotated[str | None, "URL"] = None,
        max_apps: Annotated[str | None, "N"] = None,
        allow_remote_insecure: bool = False,
    ) -> None:
        """Run the collector (gRPC for tracers and the CLI, and the web UI) until stopped.

        Args:
          grpc_host: host:port for gRPC (default: COLDMOD_GRPC_HOST, else localhost:7777).
          web_host: host:port for the web UI (default: COLDMOD_WEB_HOST, else localhost:7778).
          store: where heatmaps are kept, like sqlite:///var/lib/coldmod.db or redis://host:port/0 (shared by
            several collectors; rediss with ?ca=PATH for TLS, ?cluster=1 for a Redis Cluster through any of its
            nodes, the password in COLDMOD_REDIS_PASSWORD).
          max_apps: the most apps the collector keeps (default 1000); Register refuses new ones beyond it.
          allow_remote_insecure: with COLDMOD_INSECURE=on, listen beyond this machine anyway (no TLS, no key).
        """
        from coldmod_cli.server import serve

        limit = None
        if max_apps is not None:
            try:
                limit = int(str(max_apps))
            except ValueError:
                raise UsageError(f"--max-apps {max_apps!r} is not a number; give a count like 1000") from None
        code = serve(
            grpc_host=grpc_host,
            web_host=web_host,
            store=store,
            max_apps=limit,
            allow_remote_insecure=_args.flag("allow-remote-insecure", allow_remote_insecure),
        )
        if code:
            raise SystemExit(code)

    @command
    def connect(
        self,
        url: Annotated[str | None, "URL"] = None,
        *,
        stdin: bool = False,
        key_file: Annotated[str | None, "PATH"] = None,
    ) -> None:
        """Pair this checkout with the web UI, so the UI can ignore, remove and open functions here.

        Choose 'Connect a checkout' in the web UI, then run `coldmod connect
        --stdin` here and paste the key it shows (or set COLDMOD_CONNECT_KEY,
        or --key-file a file only you can read). The key is never taken from
        the command line, where other users can read it. Without a key, the
        collector makes a new pairing and its page address is printed. Runs
        until Ctrl-C; reconnects by itself when the collector restarts.

        Args:
          url: the web UI's address, for the printed link (never a connect key).
          stdin: read the connect key from stdin (asked for without echo on a terminal).
          key_file: read the connect key from this file (mode 0600).
        """
        from coldmod_cli.connect import connect

        code = connect(url, None, stdin=_args.flag("stdin", stdin), key_file=key_file)
        if code:
            raise SystemExit(code)

    @command
    def status(self, *, format: Format = "text") -> None:
        """Print what coldmod sees: root, app, files and functions, environment, collector, tracing engine.

        Exits 1 when something needs fixing (no rootmarker, a bad variable, the
        collector unreachable or refusing the credentials).

        Args:
          format: text or json.
        """
        from coldmod_cli import status

        status.report(_args.output_format(format))

    @command
    def demo(self, *, open: bool = False, keep: bool = False) -> None:
        """Show the whole job on sample code in under a minute: trace, heatmap, cold list, removal preview.

        Starts a collector on free ports with a temporary store, runs a bundled
        sample shop under coldmod-trace, sends it traffic, then prints the
        heatmap, the cold functions and a dry-run removal. Nothing outside a
        temporary directory is touched.

        Args:
          open: open the web UI in a browser at the end, and keep it running until Ctrl-C.
          keep: keep the collector and the web UI running until Ctrl-C.
        """
        from coldmod_cli import demo

        demo.run(open_browser=_args.flag("open", open), keep=_args.flag("keep", keep))


def local_init(directory: Path, *, nested: bool = False) -> Path:
    """``coldmod init`` in ``directory``; refuses inside an existing root unless ``nested``."""
    from coldmod_cli import markerfile
    from coldmod_cli._errors import CliError
    from coldmod_trace.rootmarker import MARKER, RootmarkerError, find_root

    try:
        parent = find_root(directory.parent) if directory.parent != directory else None
    except RootmarkerError:
        parent = None
    if parent is not None and not nested and not (directory / MARKER).exists():
        raise CliError(
            f"{directory} is already inside the root {parent} (its {MARKER} covers this directory); "
            f"run coldmod commands here as they are, or `coldmod init --nested` to make this a separate root"
        )
    path = markerfile.init(directory)
    if parent is not None:
        say(f"note: {parent / MARKER} also exists; the nearest rootmarker wins, so this directory is a separate root")
    return path
