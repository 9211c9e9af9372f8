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
from coldmod_cli._errors import EXIT_FAILURE, CliError, UsageError, command, say
from coldmod_cli._words import plural

__all__ = ["Cache", "Coldmod"]

#: ``--format``: what the data commands print.
Format = Literal["text", "json"]
#: ``coldmod cold --format``: the data formats, and those for pull requests and code scanning.
ColdFormat = Literal["text", "json", "markdown", "sarif"]
#: A period like 30d, 12h, 15m or 2w (see :func:`coldmod_cli._args.duration`).
Duration = Annotated[str | None, "DURATION"]
HostPort = Annotated[str | None, "HOST:PORT"]
#: ``--from FILE``: a heatmap saved by ``coldmod fetch --save`` (``from`` is a keyword, so the parameter is ``from_``).
Snapshot = Annotated[str | None, "FILE"]
#: ``fetch --save``: functions with no call in this many days carry their daily history in the
#: snapshot (the seasonal rule needs it); hot functions' history stays on the collector.
SNAPSHOT_QUIET_DAYS = 7


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
    def fetch(self, *, format: Format = "text", save: Annotated[str | None, "FILE"] = None) -> None:
        """Print the collector's heatmap for this checkout: calls, recent calls, last and first call, versions.

        The first line lists the app's live versions and the collector's
        retention; then per function its calls in all and in the last 7, 30 and
        90 days, its last and first call, and the versions that have it. Keys
        the collector has but this checkout does not are skipped (their number
        is said on stderr); functions the collector has not seen yet are shown
        as untracked. With --save, the heatmap is written to FILE instead (a
        snapshot that `cold`, `rm` and `report` read with --from, offline).

        Args:
          format: text (a table) or json (see the README for the shape).
          save: write the collector's heatmap to this file (JSON, see docs/cli.md) rather than print it.
        """
        fmt = _args.output_format(format)
        if save is not None:
            from coldmod_cli import snapshot

            found = local.checkout()
            app = local.app_name(found)
            # Functions quiet for a week carry their daily history, so `cold --from … --since 7d` (or
            # longer) applies the seasonal rule offline as it does against the collector.
            response = report.fetch_response(app, quiet_days=SNAPSHOT_QUIET_DAYS)
            written = snapshot.write(str(save), app, response)
            say(f"saved the heatmap of {app!r} ({plural(len(response.entries), 'function')}) to {written}; "
                f"read it with --from {written}")
            return
        report.fetch(report.load(), fmt)

    @command
    def cold(
        self,
        *paths: str,
        check: bool = False,
        since: Duration = None,
        min_tracked: Duration = None,
        format: ColdFormat = "text",
        from_: Snapshot = None,
    ) -> None:
        """Print the cold functions, sorted by file and line, with a summary on stderr.

        A function is cold when it was never called since it was first traced,
        or, with --since 90d, when it had no call in the last 90 days and has been
        traced for at least 90 days. A cold function last called at a month-,
        quarter- or year-end, or in this month a year ago, is shown as seasonal:
        review, which rm --cold keeps unless --include review. Functions marked
        `# coldmod: keep` on their def line are never listed.

        Args:
          paths: only functions in files under these files or directories (default: the whole root).
          check: exit 1 when any function is cold, 0 when none is (a CI gate, like `ruff check`).
          since: a period like 90d, 12h or 2w; functions with no call within it (and traced that long) are cold too.
          min_tracked: only functions traced at least this long (like 7d) count; younger ones are left out.
          format: text (a table), json (see the README for the shape), markdown (a pull-request comment)
            or sarif (SARIF 2.1.0, for GitHub code scanning).
          from_: read the heatmap from this snapshot (`coldmod fetch --save FILE`) instead of the collector.
        """
        since_s = _args.duration("since", since)
        min_tracked_s = _args.duration("min-tracked", min_tracked)
        from coldmod_cli import heatmap

        fmt = _args.output_format(format, _args.COLD_FORMATS)
        limit = _limit(paths)
        # Quiet rows carry their daily history, for the seasonal rule.
        result = report.load(quiet_days=heatmap.quiet_days(since_s), snapshot=_snapshot(from_))
        rows = report.cold(report.only_under(result, limit), fmt, since=since_s, min_tracked=min_tracked_s)
        if _args.flag("check", check) and rows:
            raise SystemExit(EXIT_FAILURE)

    @command
    def report(self, *, html: Annotated[str | None, "DIR"] = None, from_: Snapshot = None) -> None:
        """Write the heatmap as a static HTML report: the web UI's treemap, table and details, offline.

        The folder opens from file:// with no network and no collector (attach
        it to a CI run, or open DIR/index.html). The data comes from the
        collector, or with --from from a snapshot saved by `coldmod fetch --save`.

        Args:
          html: the directory to write index.html, app.js, style.css and data.js into (made if missing).
          from_: read the heatmap from this snapshot instead of the collector.
        """
        from coldmod_cli import heatmap, htmlreport
        from coldmod_cli import snapshot as snapshots

        if html is None or not str(html).strip():
            raise UsageError("name the folder to write: `coldmod report --html DIR`")
        found = local.checkout()
        app = local.app_name(found)
        saved = _snapshot(from_)
        response = snapshots.read(saved, app) if saved is not None else report.fetch_response(app)
        now = response.now_ms or heatmap.now_ms()
        index = htmlreport.write(str(html), response, now)
        say(f"wrote the report of {app!r} ({plural(len(response.entries), 'function')}) to {index}; "
            f"open it in a browser (no network needed)")

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
        from_: Snapshot = None,
        branch_per_owner: bool = False,
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
          from_: with --cold, read the heatmap from this snapshot (`coldmod fetch --save FILE`), offline.
          branch_per_owner: with --cold, one local git branch and commit per owner in CODEOWNERS (one branch when
            there is none), each with a pull-request description; the work tree is left as it was; never pushes.
          format: text (verdicts, reasons and the diff) or json (see docs/verdicts.md for the shape).
        """
        from coldmod_cli import heatmap, removal

        # (`rm --dry-run KEY`: the strict layer has already given KEY back to the keys; see _cmdline.check_call.)
        dry = _args.flag("dry-run", dry_run)
        forced = _args.flag("force", force)
        with_cold = _args.flag("cold", cold)
        dirty_ok = _args.flag("allow-dirty", allow_dirty)
        wanted = _args.keys(keys)
        since_s = _args.duration("since", since)
        min_tracked_s = _args.duration("min-tracked", min_tracked)
        verdicts = removal.include_option(include)
        fmt = _args.output_format(format)
        if not wanted and not with_cold:
            raise UsageError("name at least one key, or --cold; `coldmod cold` lists the cold functions")
        if (since_s is not None or min_tracked_s is not None) and not with_cold:
            raise UsageError("--since and --min-tracked only apply with --cold")
        per_owner = _args.flag("branch-per-owner", branch_per_owner)
        if per_owner and (not with_cold or dirty_ok):
            raise UsageError("--branch-per-owner applies to --cold, on a clean git work tree (not with --allow-dirty)")
        if from_ is not None and not with_cold:
            raise UsageError("--from only applies with --cold (it is where the cold functions come from)")
        if forced and with_cold:
            raise UsageError("--force applies to keys named one by one; it cannot be combined with --cold")
        found = local.checkout()
        local.require_keys(found, wanted, what="remove")
        removal.refuse_kept(found, wanted)
        cold_keys: list[str] = []
        seasonal: dict[str, str] = {}
        calls: dict[str, int] = {}
        if with_cold:
            result = report.load(quiet_days=heatmap.quiet_days(since_s), snapshot=_snapshot(from_))
            cold_keys = removal.cold_keys(result, since=since_s, min_tracked=min_tracked_s, dry_run=dry)
            seasonal = removal.seasonal_held(result, cold_keys)
            calls = removal.production_calls(result)
        if per_owner:
            from coldmod_cli import branches

            removal.require_clean(found.marker.root)  # the plans read the work tree; the commits go on HEAD
            branches.per_owner(found, [*wanted, *(k for k in cold_keys if k not in wanted)], result,
                               include=verdicts, dry_run=dry)
            return
        removal.remove(
            found, wanted, cold_keys, dry_run=dry, force=forced, include=verdicts, allow_dirty=dirty_ok,
            seasonal=seasonal, calls=calls, fmt=fmt,
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
        retire_after: Annotated[str | None, "DURATION"] = None,
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
          retire_after: a version of an app none of whose processes registered or reported for this long (default
            30d) is retired: keys no remaining version has leave the heatmap. An app's newest version stays.
          allow_remote_insecure: with COLDMOD_INSECURE=on, listen beyond this machine anyway (no TLS, no key).
        """
        from coldmod_cli.server import serve
        from coldmod_cli.server.store import DEFAULT_RETIRE_AFTER_MS

        limit = None
        if max_apps is not None:
            try:
                limit = int(str(max_apps))
            except ValueError:
                raise UsageError(f"--max-apps {max_apps!r} is not a number; give a count like 1000") from None
        retire_s = _args.duration("retire-after", retire_after)
        if retire_s is not None and retire_s < 1:
            raise UsageError(f"--retire-after must be a positive duration like 30d, not {retire_after!r}")
        code = serve(
            grpc_host=grpc_host,
            web_host=web_host,
            store=store,
            max_apps=limit,
            retire_after_ms=DEFAULT_RETIRE_AFTER_MS if retire_s is None else int(retire_s * 1000),
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


def _snapshot(value: str | None) -> str | None:
    """``--from FILE`` as typed (None: ask the collector)."""
    if value is None:
        return None
    if not str(value).strip():
        raise UsageError("--from needs a file saved by `coldmod fetch --save FILE`")
    return str(value)


def _limit(paths: tuple[str, ...]) -> list[str]:
    """The root-relative paths a command is limited to (checked before anything is fetched)."""
    if not paths:
        return []
    from coldmod_trace.rootmarker import load

    return local.paths_under_root(load().root, list(paths))


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
