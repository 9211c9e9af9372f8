"""Authentication: every RPC but health needs ``authorization: Bearer <COLDMOD_API_KEY>``.

A refused call is counted, with its peer and never its header, in
:class:`~coldmod_cli.server.refusals.Refusals` (said at most once a minute).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from coldmod_cli.server.refusals import Refusal, Refusals

if TYPE_CHECKING:  # generic in grpc-stubs only, not at run time
    _Interceptor = grpc.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor

__all__ = ["UNAUTHENTICATED_MESSAGE", "ApiKeyInterceptor", "refuses_credentials"]

#: The same answer for a missing, malformed or wrong key: a caller learns nothing else.
UNAUTHENTICATED_MESSAGE = "missing or invalid credentials"
_OPEN_PREFIX = "/grpc.health.v1.Health/"


def refuses_credentials(behavior: Any) -> bool:
    """True for a handler behavior that refuses a call without the key (the runner lets those pass at once)."""
    return getattr(behavior, "refuses_credentials", False) is True


def _denials(refusals: Refusals) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The unary and the streaming answer to a call without the key, each counted in ``refusals``."""

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        """Answer a unary call without the key."""
        refusals.refused(Refusal.CREDENTIALS, context.peer())
        context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

    def deny_stream(request: Any, context: grpc.ServicerContext) -> Any:
        """Answer a streaming call without the key."""
        refusals.refused(Refusal.CREDENTIALS, context.peer())
        context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        yield  # pragma: no cover - makes this a generator, as streaming handlers are

    deny.refuses_credentials = deny_stream.refuses_credentials = True  # type: ignore[attr-defined]
    return deny, deny_stream


class ApiKeyInterceptor(_Interceptor):
    """Rejects, before any handler runs, a call without the right bearer key."""

    def __init__(self, api_key: str, refusals: Refusals | None = None) -> None:
        """Compare against this key (never logged); count refused calls (their peer only) in ``refusals``."""
        self._expected = f"Bearer {api_key}".encode()
        self._deny, self._deny_stream = _denials(refusals or Refusals())

    def __repr__(self) -> str:
        """Never shows the key."""
        return "ApiKeyInterceptor(api_key=***)"

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        """Pass the call on when its key matches (constant-time), else answer UNAUTHENTICATED."""
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_OPEN_PREFIX):
            return handler
        presented = b""
        for name, value in handler_call_details.invocation_metadata or ():
            if name == "authorization":
                presented = value.encode() if isinstance(value, str) else value
                break
        if hmac.compare_digest(presented, self._expected):
            return handler
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(self._deny_stream)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._deny_stream)
        return grpc.unary_unary_rpc_method_handler(self._deny)
