"""The CLI's calls to the collector, and what their failures mean in one sentence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from coldmod_trace import config

if TYPE_CHECKING:
    import grpc

    from coldmod_proto.v1 import coldmod_pb2

#: Seconds a CLI call waits for the collector before saying it is unreachable.
TIMEOUT = 10.0
#: Seconds a whole Fetch may take: an app at the limits (200,000 keys) streams ~35 MB.
#: An unreachable collector still fails at once (UNAVAILABLE), not after this.
FETCH_TIMEOUT = 120.0


def _target() -> str:
    """The collector address, for messages (never raises)."""
    try:
        return config.client_config().target
    except config.ConfigError:
        return "the collector"


def _mismatch(target: str) -> str | None:
    """The sentence for a client that reached the wrong thing (see :mod:`coldmod_cli.probe`), else None."""
    from coldmod_cli.probe import speaks

    try:
        insecure = config.client_config().insecure
    except config.ConfigError:
        return None
    found = speaks(target)
    if found in ("tls-web", "plain-web"):
        return (
            f"{target} is a web server (the collector's web UI?), not the collector's gRPC port; point "
            f"{config.COLDMOD_GRPC_HOST} at the address `coldmod serve` prints as 'gRPC listening on' (7777 by default)"
        )
    if found == "tls-grpc" and insecure:
        return (
            f"the collector at {target} uses TLS, but {config.COLDMOD_INSECURE}=on makes this client speak plaintext; "
            f"unset {config.COLDMOD_INSECURE} and set {config.COLDMOD_API_KEY} "
            f"(and {config.COLDMOD_TLS_CA} for a private CA)"
        )
    if found == "plain-grpc" and not insecure:
        return (
            f"the collector at {target} speaks plaintext (a development collector, {config.COLDMOD_INSECURE}=on), "
            f"but this client expects TLS; set {config.COLDMOD_INSECURE}=on here too, or give the collector a "
            f"certificate ({config.COLDMOD_TLS_CERT}, {config.COLDMOD_TLS_KEY})"
        )
    return None


def explain_rpc_error(error: grpc.RpcError) -> str:
    """One sentence for a failed call: what went wrong and what to do."""
    import grpc

    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or ""
    target = _target()
    if code == grpc.StatusCode.PERMISSION_DENIED and details:  # e.g. an operation insecure mode allows locally only
        return f"the collector at {target} refused: {details}"
    if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INVALID_ARGUMENT):
        return f"the collector at {target} refused the request: {details or code.name}"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return (
            f"the collector at {target} refused the credentials; "
            f"check that {config.COLDMOD_API_KEY} matches the collector's key"
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        lowered = details.lower()
        # Before the TLS hint: a web port or a plaintext collector fails the handshake too.
        mismatch = _mismatch(target)
        if mismatch:
            return mismatch
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered:
            return (
                f"cannot make a TLS connection to the collector at {target}; set {config.COLDMOD_TLS_CA} "
                f"to the CA that signed its certificate, "
                f"or {config.COLDMOD_INSECURE}=on for a plaintext development collector"
            )
        mismatch = _mismatch(target)
        if mismatch:
            return mismatch
        return (
            f"cannot reach the collector at {target}; start one with `coldmod serve` "
            f"or point {config.COLDMOD_GRPC_HOST} at a running one"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return (
            f"the collector at {target} has no heatmap for this app ({details}); "
            f"run the application under coldmod-trace first"
        )
    name = code.name if code is not None else "unknown"
    return f"the collector at {target} failed the request ({name}: {details or 'no details'})"


def fetch(app: str, env: Mapping[str, str] | None = None, *, quiet_days: int = 0) -> coldmod_pb2.FetchResponse:
    """The app's heatmap from the collector named by the environment (default: ``os.environ``).

    ``quiet_days``: entries with no call in that many UTC days carry their daily history (the seasonal rule's input).
    """
    from coldmod_proto.v1 import coldmod_pb2, coldmod_pb2_grpc

    settings = config.client_config(env=env)
    with config.client_channel(settings) as channel:
        stub = coldmod_pb2_grpc.HeatmapStub(channel)  # type: ignore[no-untyped-call]
        return merge_fetch(stub.Fetch(coldmod_pb2.FetchRequest(app=app, quiet_days=quiet_days), timeout=FETCH_TIMEOUT))


def merge_fetch(parts: Iterable[coldmod_pb2.FetchResponse]) -> coldmod_pb2.FetchResponse:
    """One FetchResponse from the parts of a streamed Fetch (one snapshot split across messages)."""
    from coldmod_proto.v1 import coldmod_pb2

    merged = coldmod_pb2.FetchResponse()
    for index, part in enumerate(parts):
        if index == 0:
            merged.CopyFrom(part)
        else:
            merged.entries.extend(part.entries)
    return merged


def _heatmap_call(method: str, request: Any, timeout: float, env: Mapping[str, str] | None = None) -> Any:
    """One unary Heatmap call to the collector named by the environment."""
    from coldmod_proto.v1 import coldmod_pb2_grpc

    settings = config.client_config(env=env)
    with config.client_channel(settings) as channel:
        stub = coldmod_pb2_grpc.HeatmapStub(channel)  # type: ignore[no-untyped-call]
        return getattr(stub, method)(request, timeout=timeout)


def list_apps(timeout: float = TIMEOUT, env: Mapping[str, str] | None = None) -> coldmod_pb2.ListAppsResponse:
    """Every app the collector knows, all pages in one response (an authenticated call: it checks the credentials)."""
    from coldmod_proto.v1 import coldmod_pb2, coldmod_pb2_grpc

    merged = coldmod_pb2.ListAppsResponse()
    settings = config.client_config(env=env)
    with config.client_channel(settings) as channel:
        stub = coldmod_pb2_grpc.HeatmapStub(channel)  # type: ignore[no-untyped-call]
        token = ""
        while True:
            page = stub.ListApps(coldmod_pb2.ListAppsRequest(page_size=1000, page_token=token), timeout=timeout)
            merged.apps.extend(page.apps)
            merged.total_apps = page.total_apps
            token = page.next_page_token
            if not token:
                return merged


def delete_app(app: str, timeout: float = TIMEOUT, env: Mapping[str, str] | None = None) -> int:
    """Delete the app's heatmap on the collector; returns how many keys it had."""
    from coldmod_proto.v1 import coldmod_pb2

    response: coldmod_pb2.DeleteAppResponse = _heatmap_call(
        "DeleteApp", coldmod_pb2.DeleteAppRequest(app=app), timeout, env
    )
    return response.keys


def info(timeout: float = TIMEOUT, env: Mapping[str, str] | None = None) -> coldmod_pb2.InfoResponse:
    """What the collector says about itself: version, web UI address, store, limits."""
    from coldmod_proto.v1 import coldmod_pb2

    response: coldmod_pb2.InfoResponse = _heatmap_call("Info", coldmod_pb2.InfoRequest(), timeout, env)
    return response
