"""What listens at an address the collector was not found at: a TLS or plaintext gRPC endpoint, or a web server.

When a call fails with UNAVAILABLE, grpc says only that it could not connect.
Two mistakes look the same from there and are common: a plaintext client
(``COLDMOD_INSECURE=on``) pointed at a TLS collector or the other way round,
and ``COLDMOD_GRPC_HOST`` pointed at the web UI's port. One short look at
the port tells them apart, so the error can name the mistake:

- a TLS handshake that succeeds: the ALPN protocol the server picks is
  ``h2`` for gRPC, anything else (or none) for the web UI;
- a TLS handshake the server answers with something that is not TLS: it
  speaks plaintext; a plaintext HTTP/1.1 request then gets ``HTTP/1.x`` from a
  web server and binary HTTP/2 frames (or nothing) from a gRPC server.

Nothing is verified or sent beyond that: no certificate check (we only ask
what the server speaks), no credentials, a deadline on every step.
"""

from __future__ import annotations

import socket
import ssl
from typing import Literal

__all__ = ["Speaks", "speaks"]

#: What is listening: gRPC or web, over TLS or plaintext; ``closed`` when nothing accepts the connection.
Speaks = Literal["tls-grpc", "tls-web", "plain-grpc", "plain-web", "closed", "unknown"]


def speaks(target: str, timeout: float = 2.0) -> Speaks:
    """What the server at ``host:port`` speaks (see the module docstring)."""
    host, _, port_text = target.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        return "unknown"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking what it speaks; nothing is sent that needs trust
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=host or None) as tls:
                    return "tls-grpc" if tls.selected_alpn_protocol() == "h2" else "tls-web"
            except (ssl.SSLError, ConnectionError):
                pass  # not TLS (or refused mid-way): ask in plaintext below
    except OSError:
        return "closed"
    try:
        with socket.create_connection((host, port), timeout=timeout) as plain:
            plain.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii", "replace"))
            answer = plain.recv(16)
    except OSError:
        return "unknown"
    return "plain-web" if answer.startswith(b"HTTP/") else "plain-grpc"
