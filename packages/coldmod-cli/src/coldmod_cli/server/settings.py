"""The collector's side of the environment: where to listen, TLS files, the API key.

Addresses and ``COLDMOD_INSECURE`` are read by :mod:`coldmod_trace.config`
(one reader per variable); this module adds what only a server needs.

Insecure mode has no TLS and no authentication, so it listens on this
machine's loopback interface only: a host that is not loopback (``0.0.0.0``,
a LAN address, a name resolving to one) is refused unless the operator says
``--allow-remote-insecure``, and then ``warnings`` says what that exposes.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coldmod_trace import config
from coldmod_trace.config import ConfigError

__all__ = ["ServerSettings", "is_loopback_host", "server_settings"]


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``serve`` needs from arguments and environment, validated."""

    grpc_host: str
    grpc_port: int
    web_host: str
    web_port: int
    insecure: bool
    api_key: str | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (an unresolvable name is not)."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _insecure_binds(
    grpc_host: str, grpc_port: int, web_host: str, web_port: int, allow_remote: bool
) -> tuple[str, ...]:
    """Refuse insecure listening beyond loopback, or (when allowed) the warnings to print."""
    remote = [
        f"{what} on {host or '*'}:{port}"
        for what, host, port in (("gRPC", grpc_host, grpc_port), ("the web UI", web_host, web_port))
        if not is_loopback_host(host)
    ]
    if not remote:
        return ()
    where = " and ".join(remote)
    if not allow_remote:
        raise ConfigError(
            f"{config.COLDMOD_INSECURE}=on would serve {where} without TLS or authentication to the network;"
            " listen on 127.0.0.1 (or localhost), configure TLS and an API key, or pass --allow-remote-insecure"
        )
    return (
        f"warning: insecure mode serves {where} to the network without TLS or authentication:"
        " anyone who can reach it can read heatmaps, send counts and drive connected checkouts",
    )

def _read(variable: str, environ: Mapping[str, str]) -> tuple[str, bytes]:
    path = environ.get(variable, "").strip()
    if not path:
        raise ConfigError(
            f"{variable} is not set; point it at a PEM file, or set {config.COLDMOD_INSECURE}=on"
            " for a plaintext development collector"
        )
    try:
        return path, Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path!r} cannot be read ({exc.strerror}); point it at a PEM file") from None


def server_settings(
    grpc_host: str | None = None,
    web_host: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    allow_remote_insecure: bool = False,
) -> ServerSettings:
    """Read and validate the server side of the environment (arguments win over variables)."""
    import os

    environ = os.environ if env is None else env
    host, port = config.host_port(grpc_host, env=environ)
    whost, wport = config.host_port(web_host, variable=config.COLDMOD_WEB_HOST, env=environ)
    if config.insecure(environ):
        warnings = _insecure_binds(host, port, whost, wport, allow_remote_insecure)
        return ServerSettings(host, port, whost, wport, True, warnings=warnings)
    api_key = environ.get(config.COLDMOD_API_KEY, "").strip()
    if not api_key:
        raise ConfigError(
            f"{config.COLDMOD_API_KEY} is not set; set it to the secret clients must present,"
            f" or set {config.COLDMOD_INSECURE}=on for a plaintext development collector"
        )
    cert_path, cert = _read(config.COLDMOD_TLS_CERT, environ)
    key_path, key = _read(config.COLDMOD_TLS_KEY, environ)
    # The stdlib parses the pair the way a TLS stack will: a bad file fails here, not at the first handshake.
    try:
        # An encrypted key gets an empty password (and fails) instead of a terminal prompt.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path, password="")
    except (ssl.SSLError, OSError, ValueError):
        raise ConfigError(
            f"{config.COLDMOD_TLS_CERT}={cert_path!r} and {config.COLDMOD_TLS_KEY}={key_path!r}"
            " are not a matching PEM certificate and private key"
        ) from None
    return ServerSettings(host, port, whost, wport, False, api_key, cert, key)
