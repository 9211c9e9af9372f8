"""The production configuration for tracer tests: a collector on TLS (trustme certificates) with an API key.

The collector is the same recording servicer as conftest's, served over TLS
behind an interceptor that answers UNAUTHENTICATED unless the call carries
``authorization: Bearer <key>`` — what ``coldmod serve`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from conftest import Collector

from coldmod_proto.v1 import coldmod_pb2_grpc

API_KEY = "test-key-" + "k" * 24


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid credentials")


class _BearerKey(grpc.ServerInterceptor):
    """Refuses every call whose ``authorization`` is not ``Bearer <key>``."""

    def __init__(self, key: str) -> None:
        self.expected = f"Bearer {key}"
        self.refused = 0

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        presented = dict(details.invocation_metadata or ()).get("authorization")
        if handler is None or presented == self.expected:
            return handler
        self.refused += 1
        return grpc.unary_unary_rpc_method_handler(_deny)


class TlsCollector(Collector):
    """conftest's Collector on TLS with an API key; ``env`` is what a production tracer is given."""

    def __init__(self, directory: Path, api_key: str = API_KEY) -> None:
        super().__init__()
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._credentials = grpc.ssl_server_credentials(
            [(cert.private_key_pem.bytes(), b"".join(p.bytes() for p in cert.cert_chain_pems))]
        )
        self.auth = _BearerKey(api_key)
        self.api_key = api_key

    def start(self) -> TlsCollector:
        """Serve on 127.0.0.1 (port 0 the first time, the same port after a stop)."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=[self.auth])
        coldmod_pb2_grpc.add_TracingServicer_to_server(self.recorder, server)
        port = server.add_secure_port(f"127.0.0.1:{self.port}", self._credentials)
        assert port, f"could not bind 127.0.0.1:{self.port}"
        self.port = port
        server.start()
        self._server = server
        return self

    @property
    def env(self) -> dict[str, str]:
        """The tracer's production environment: TLS with this CA, and the key."""
        return {
            "COLDMOD_GRPC_HOST": f"127.0.0.1:{self.port}",
            "COLDMOD_TLS_CA": str(self.ca_path),
            "COLDMOD_API_KEY": self.api_key,
        }


@pytest.fixture
def tls_collector(tmp_path: Path) -> Iterator[TlsCollector]:
    """A TLS collector with an API key on a free loopback port."""
    server = TlsCollector(tmp_path).start()
    yield server
    server.stop()
