"""Every ``COLDMOD_*`` environment variable, read and validated in one place.

Precedence everywhere: an explicit argument, then the variable, then the
default. An invalid value raises :class:`ConfigError`, whose message is one
sentence naming the variable and what a valid value looks like. This module
also builds the gRPC client channel (TLS and the API key), so there is one
place that does.
"""

from __future__ import annotations

import collections
import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc is imported lazily: reading config must stay cheap.
    import grpc

__all__ = [
    "COLDMOD_API_KEY",
    "COLDMOD_APP",
    "COLDMOD_FLUSH_INTERVAL",
    "COLDMOD_GRPC_HOST",
    "COLDMOD_INSECURE",
    "COLDMOD_MODE",
    "COLDMOD_RELAY_DIR",
    "COLDMOD_ROOT",
    "COLDMOD_TLS_CA",
    "COLDMOD_TLS_CERT",
    "COLDMOD_TLS_KEY",
    "COLDMOD_VERSION",
    "COLDMOD_WEB_HOST",
    "MAX_MESSAGE_BYTES",
    "MODES",
    "ClientConfig",
    "ConfigError",
    "Mode",
    "client_channel",
    "client_config",
    "deployment_version",
    "flush_interval",
    "host_port",
    "insecure",
    "trace_mode",
]

COLDMOD_GRPC_HOST = "COLDMOD_GRPC_HOST"
"""``host:port`` of the collector's gRPC endpoint, no scheme. Default ``localhost:7777``."""

COLDMOD_WEB_HOST = "COLDMOD_WEB_HOST"
"""``host:port`` of the web UI, no scheme. Default ``localhost:7778``."""

COLDMOD_TLS_CA = "COLDMOD_TLS_CA"
"""PEM CA bundle that signs the server's certificate. Default: the system's roots."""

COLDMOD_TLS_CERT = "COLDMOD_TLS_CERT"
"""The server's PEM certificate (chain). Required by ``coldmod serve`` unless insecure."""

COLDMOD_TLS_KEY = "COLDMOD_TLS_KEY"
"""The server's PEM private key. Required by ``coldmod serve`` unless insecure."""

COLDMOD_API_KEY = "COLDMOD_API_KEY"
"""Shared secret: gRPC ``authorization: Bearer …``; web basic auth user ``coldmod``. Required unless insecure."""

COLDMOD_INSECURE = "COLDMOD_INSECURE"
"""``on`` (or true/yes/1): plaintext, no authentication (development only). Unset, empty or ``off``
(false/no/0): TLS and auth. Any other value is an error, never a guess."""

COLDMOD_ROOT = "COLDMOD_ROOT"
"""The traced application's root (at or below its rootmarker). Default: found from the cwd, then the main script."""

COLDMOD_APP = "COLDMOD_APP"
"""The app name (heatmap namespace). Default: ``[app] name`` of the rootmarker, else the root's name."""

COLDMOD_MODE = "COLDMOD_MODE"
"""Tracer mode: ``sampled`` (default; bounded overhead, first calls exact) or ``exact``."""

COLDMOD_FLUSH_INTERVAL = "COLDMOD_FLUSH_INTERVAL"
"""Seconds between the tracer's batches, a number from 0.05 to 3600. Default ``10``."""

COLDMOD_VERSION = "COLDMOD_VERSION"
"""The deployment's label for this version of the app (a git sha, a release tag), at most 128 printable
characters; the collector shows it next to the version's fingerprint. Default: none. An invalid value is
one warning, and the version goes without a label: tracing goes on."""

COLDMOD_RELAY_DIR = "COLDMOD_RELAY_DIR"
"""Set by the tracer, not by users: the directory of the process tree's relay, inherited by every process
the first traced one starts, so that the tree shares one relay. A value that is not a ``coldmod-relay-*``
directory of this user, private to it, is replaced."""

DEFAULT_GRPC_HOST = "localhost:7777"
DEFAULT_WEB_HOST = "localhost:7778"
DEFAULT_FLUSH_INTERVAL = 10.0
MAX_VERSION_LENGTH = 128
#: Largest gRPC message either side accepts (a Register of ~100k keys fits).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


class Mode(enum.StrEnum):
    """How the tracer counts: ``sampled`` (default) or ``exact``; compares equal to its name."""

    #: The first calls of every function per window exactly, frequent calls estimated (bounded overhead).
    SAMPLED = "sampled"
    #: Every call counted (compiled counters in application modules, the engine for the rest).
    EXACT = "exact"


MODES = tuple(mode.value for mode in Mode)


class ConfigError(ValueError):
    """A ``COLDMOD_*`` variable (or the argument standing for it) is missing or invalid."""


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


#: The spellings of ``COLDMOD_INSECURE``, any case; unset or empty is off (secure).
SWITCH_WORDS: Mapping[str, bool] = {
    **dict.fromkeys(("on", "true", "yes", "1"), True),
    **dict.fromkeys(("off", "false", "no", "0", ""), False),
}


def insecure(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``COLDMOD_INSECURE`` turns TLS and auth off; :class:`ConfigError` for a value that is neither."""
    raw = _env(env).get(COLDMOD_INSECURE, "")
    try:
        return SWITCH_WORDS[raw.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"{COLDMOD_INSECURE}={raw!r} is neither on nor off; use on (or true, yes, 1) for a plaintext "
            f"development collector, or off (or false, no, 0, or leave it unset) for TLS and an API key"
        ) from None


def host_port(
    value: str | None = None, *, variable: str = COLDMOD_GRPC_HOST, env: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """``(host, port)`` from the argument, else the variable, else its default."""
    default = DEFAULT_WEB_HOST if variable == COLDMOD_WEB_HOST else DEFAULT_GRPC_HOST
    raw = value if value is not None else _env(env).get(variable, default)
    raw = raw.strip()
    match = _HOST_PORT.match(raw)
    if not match or not 0 <= int(match.group(2)) <= 65535:
        hint = " (no scheme)" if "://" in raw else ""
        raise ConfigError(f"{variable}={raw!r} is not a host:port{hint}; use a value like {default}")
    return match.group(1).strip("[]"), int(match.group(2))


def trace_mode(value: str | None = None, env: Mapping[str, str] | None = None) -> Mode:
    """The tracer mode from the argument, else ``COLDMOD_MODE``, else ``sampled``."""
    raw = (value if value is not None else _env(env).get(COLDMOD_MODE, "sampled")).strip().lower()
    if raw not in MODES:
        raise ConfigError(f"{COLDMOD_MODE}={raw!r} is not a mode; use sampled or exact")
    return Mode(raw)


def flush_interval(value: float | str | None = None, env: Mapping[str, str] | None = None) -> float:
    """Seconds between batches from the argument, else ``COLDMOD_FLUSH_INTERVAL``, else 10."""
    raw = value if value is not None else _env(env).get(COLDMOD_FLUSH_INTERVAL)
    if raw is None or raw == "":
        return DEFAULT_FLUSH_INTERVAL
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0.05 <= seconds <= 3600:
        raise ConfigError(
            f"{COLDMOD_FLUSH_INTERVAL}={raw!r} is not a number of seconds from 0.05 to 3600; use e.g. 10"
        )
    return seconds


def deployment_version(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The version label from the argument, else ``COLDMOD_VERSION``, else ""; :class:`ConfigError` if invalid."""
    raw = value if value is not None else _env(env).get(COLDMOD_VERSION, "")
    label = raw.strip()
    if len(label) > MAX_VERSION_LENGTH or not label.isprintable():
        shown = raw if len(raw) <= 60 else raw[:60] + "…"
        raise ConfigError(
            f"{COLDMOD_VERSION}={shown!r} is not a version label; use at most {MAX_VERSION_LENGTH} printable "
            f"characters, like a git sha or v1.4.2"
        )
    return label


@dataclass(frozen=True)
class ClientConfig:
    """How a client (tracer or CLI) reaches the collector."""

    target: str
    insecure: bool
    api_key: str | None
    ca: bytes | None

    def __repr__(self) -> str:
        """Never shows the API key."""
        masked = "***" if self.api_key else None
        return f"ClientConfig(target={self.target!r}, insecure={self.insecure}, api_key={masked})"


def client_config(target: str | None = None, env: Mapping[str, str] | None = None) -> ClientConfig:
    """Read and validate the client side of the environment."""
    environ = _env(env)
    host, port = host_port(target, env=environ)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if insecure(environ):
        return ClientConfig(address, True, None, None)
    api_key = environ.get(COLDMOD_API_KEY, "")
    if not api_key.strip():
        raise ConfigError(
            f"{COLDMOD_API_KEY} is not set; set it to the collector's API key, "
            f"or set {COLDMOD_INSECURE}=on for a plaintext development collector"
        )
    ca = None
    ca_path = environ.get(COLDMOD_TLS_CA, "").strip()
    if ca_path:
        try:
            ca = Path(ca_path).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{COLDMOD_TLS_CA}={ca_path!r} cannot be read ({exc.strerror}); point it at a PEM CA bundle"
            ) from None
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            raise ConfigError(f"{COLDMOD_TLS_CA}={ca_path!r} holds no PEM certificate; point it at a PEM CA bundle")
    return ClientConfig(address, False, api_key.strip(), ca)


def channel_options() -> list[tuple[str, int]]:
    """gRPC options shared by clients and the server."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 0),  # we retry ourselves, with our own ids
        # Connections of our own: grpc shares one per target process-wide by default, so a channel
        # made in a forked child would take over the parent's TLS connection.
        ("grpc.use_local_subchannel_pool", 1),
    ]


def client_channel(config: ClientConfig | None = None) -> grpc.Channel:
    """A gRPC channel to the collector: TLS plus ``authorization: Bearer`` unless insecure.

    The key travels as per-call metadata added on the calling thread, not as
    ``access_token_call_credentials``: grpc runs a call-credentials plugin on a
    new Python thread per call, and Python 3.12+ refuses to start threads at
    interpreter shutdown, where the tracer's exit flush runs.
    """
    import grpc

    config = config or client_config()
    if config.insecure:
        return grpc.insecure_channel(config.target, options=channel_options())
    channel = grpc.secure_channel(
        config.target, grpc.ssl_channel_credentials(root_certificates=config.ca), options=channel_options()
    )
    return grpc.intercept_channel(channel, _bearer_interceptor(config.api_key or ""))


def _bearer_interceptor(api_key: str) -> grpc.UnaryUnaryClientInterceptor[object, object]:
    """An interceptor adding ``authorization: Bearer <key>`` to every call (all four call shapes)."""
    import grpc

    class _Details(
        collections.namedtuple(
            "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
        ),
        grpc.ClientCallDetails,
    ):
        """ClientCallDetails with our metadata (grpc's own type is abstract)."""

    class Bearer(  # generic in grpc-stubs only, not at run time
        grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
        grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
        grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
        grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
    ):
        """Adds the key to the call's metadata; never shows it."""

        def __repr__(self) -> str:
            return "Bearer(api_key=***)"

        def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
            metadata = [(k, v) for k, v in (details.metadata or ()) if k != "authorization"]
            metadata.append(("authorization", f"Bearer {api_key}"))
            return _Details(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )

        def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
            return continuation(self._details(details), request)

        def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
            return continuation(self._details(details), request)

        def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
            return continuation(self._details(details), requests)

        def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
            return continuation(self._details(details), requests)

    return Bearer()
