"""``coldmod status``: what the CLI sees, each part checked on its own so one problem hides no other."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from coldmod_cli._errors import CliError
from coldmod_cli._words import plural
from coldmod_trace import config
from coldmod_trace.rootmarker import RootmarkerError

_SECRETS = frozenset({config.COLDMOD_API_KEY})
_VARIABLES = (
    config.COLDMOD_GRPC_HOST,
    config.COLDMOD_WEB_HOST,
    config.COLDMOD_INSECURE,
    config.COLDMOD_API_KEY,
    config.COLDMOD_TLS_CA,
    config.COLDMOD_APP,
    config.COLDMOD_ROOT,
    config.COLDMOD_MODE,
    config.COLDMOD_FLUSH_INTERVAL,
)


def mask(name: str, value: str) -> str:
    """A variable's value for display; secrets show only that they are set and their length."""
    if name in _SECRETS:
        return f"set ({len(value)} characters, hidden)"
    return value


def engine() -> dict[str, str]:
    """The tracing engine this Python would use, and why (coverage.py's habit: the reason is reportable)."""
    from coldmod_trace.tracer import engine_preview

    name, reason = engine_preview()
    return {"engine": name, "reason": reason or "the fastest engine this Python offers"}


def gather() -> tuple[dict[str, Any], list[str]]:
    """Everything status reports, and the problems found (one sentence each)."""
    from coldmod_cli import client, keep, local

    problems: list[str] = []
    info: dict[str, Any] = {
        "root": None,
        "app": None,
        "files": None,
        "functions": None,
        "ignored_keys": None,
        "kept_functions": None,
    }
    try:
        found = local.checkout()
        info.update(
            root=str(found.marker.root),
            app=local.app_name(found),
            files=len(found.files),
            functions=len(found.sources),
            ignored_keys=len(found.marker.ignore_keys),
            skipped_files=len(found.skipped),
            kept_functions=len(keep.kept(found.marker.root, keep.rows_of(found))),
        )
    except RootmarkerError as exc:  # reported; the other checks still run
        problems.append(str(exc))
    info["environment"] = {name: mask(name, os.environ[name]) for name in _VARIABLES if name in os.environ}
    collector: dict[str, Any] = {
        "address": None,
        "reachable": False,
        "authenticated": False,
        "apps": None,
    }
    try:
        settings = config.client_config()
        collector["address"] = settings.target
        collector["tls"] = not settings.insecure
        response = client.list_apps(timeout=5.0)
        collector.update(reachable=True, authenticated=True, apps=len(response.apps))
        if info["app"] and info["app"] not in {summary.app for summary in response.apps}:
            collector["note"] = f"no heatmap for {info['app']!r} yet"
        about = _collector_info()
        if about is not None:
            collector.update(about)
    except config.ConfigError as exc:
        problems.append(str(exc))
    except Exception as exc:
        import grpc

        if not isinstance(exc, grpc.RpcError):
            raise
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            collector["reachable"] = True
        problems.append(client.explain_rpc_error(exc))
    info["collector"] = collector
    info["tracing"] = engine() | {"python": sys.version.split()[0]}
    return info, problems


def _collector_info() -> dict[str, Any] | None:
    """What the collector says about itself (Info): version, web UI, store, what a crash of it loses, refusals."""
    import grpc

    from coldmod_cli import client

    try:
        answer = client.info(timeout=5.0)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    return {
        "version": answer.version,
        "web_url": answer.web_url,
        "store": answer.store,
        "durability": answer.durability,
        "refused": {"credentials": answer.refused_credentials, "tls": answer.refused_tls},
    }


def report(fmt: str) -> None:
    """Print the status; fail (exit 1) when something needs fixing."""
    info, problems = gather()
    if fmt == "json":
        json.dump(info | {"problems": problems}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _text(info)
    if problems:
        for problem in problems[:-1]:
            print(f"coldmod: {problem}", file=sys.stderr)
        raise CliError(problems[-1])


def _text(info: dict[str, Any]) -> None:
    def line(label: str, value: Any) -> None:
        print(f"{label + ':' if label else '':<14}{value if value is not None else '-'}")

    line("root", info["root"])
    line("app", info["app"])
    line("files", info["files"])
    if info["functions"] is not None:
        kept = f", {info['kept_functions']} marked `# coldmod: keep`" if info.get("kept_functions") else ""
        line("functions", f"{info['functions']} ({plural(info['ignored_keys'], 'key')} ignored{kept})")
    else:
        line("functions", None)
    collector = info["collector"]
    if collector["authenticated"]:
        auth = "authenticated" if collector.get("tls") else "no authentication (insecure)"
        state = f"reachable, {auth}, {plural(collector['apps'], 'app')}" + (
            f"; {collector['note']}" if "note" in collector else ""
        )
    elif collector["reachable"]:
        state = "reachable, credentials refused"
    else:
        state = "not reachable"
    line("collector", f"{collector['address'] or '-'} ({state})")
    if collector.get("version"):
        line("", f"coldmod-cli {collector['version']}; web UI {collector.get('web_url') or 'off'}")
    if collector.get("store"):
        line("store", f"{collector['store']}: {collector['durability']}")
    if "refused" in collector:
        refused = collector["refused"]
        line(
            "refused",
            f"{plural(refused['credentials'], 'call')} with a wrong or missing API key, "
            f"{plural(refused['tls'], 'failed TLS handshake')} on the web UI (since the collector started)",
        )
    tracing = info["tracing"]
    line("engine", f"{tracing['engine']} (Python {tracing['python']}: {tracing['reason']})")
    env = info["environment"]
    if not env:
        line("environment", "no COLDMOD_* variables set")
    for index, (name, value) in enumerate(env.items()):
        line("environment" if index == 0 else "", f"{name}={value}")
