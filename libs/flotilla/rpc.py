"""gRPC security every server and client shares: TLS channels and service-token interceptors.

TLS is a switch: a server given a certificate and key serves TLS only; a client given a CA file
verifies the server with it (and `tls_server_name` when the address is not a name in the
certificate). Service tokens (flotilla.auth's ServiceTokenSigner/Verifier) ride in call metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from grpc import aio

from flotilla import tracing
from flotilla.auth import ServiceTokenSigner, ServiceTokenVerifier, Unauthenticated
from flotilla.errors import ConfigurationError

HEALTH_PREFIX = "/grpc.health.v1.Health/"
"""Health checks answer without credentials: probes and load balancers make them."""


def _read(path: str, what: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"the {what} {path} does not exist")
    return file.read_bytes()


def server_credentials(cert_file: str | None, key_file: str | None) -> grpc.ServerCredentials | None:
    """TLS credentials for a server, or None (plaintext) when neither file is given."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ConfigurationError("TLS needs both a certificate file and a key file")
    return grpc.ssl_server_credentials([(_read(key_file, "TLS key"), _read(cert_file, "TLS certificate"))])


def channel_options(ca_file: str | None, server_name: str | None) -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", server_name)] if ca_file and server_name else []


def aio_channel(
    address: str,
    *,
    ca_file: str | None = None,
    server_name: str | None = None,
    interceptors: Sequence[aio.ClientInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> aio.Channel:
    """An asyncio channel: TLS verified with `ca_file` when given, else plaintext; with tracing on,
    every call carries the caller's trace context (flotilla.tracing)."""
    all_options = [*options, *channel_options(ca_file, server_name)]
    interceptors = [*interceptors, *tracing.client_interceptors()]
    if ca_file:
        credentials = grpc.ssl_channel_credentials(root_certificates=_read(ca_file, "CA file"))
        return aio.secure_channel(address, credentials, options=all_options, interceptors=interceptors)
    return aio.insecure_channel(address, options=all_options, interceptors=interceptors)


def sync_channel(address: str, *, ca_file: str | None = None, server_name: str | None = None) -> grpc.Channel:
    """A blocking channel (the UI's): TLS verified with `ca_file` when given, else plaintext; with
    tracing on, every unary call made inside a span carries its trace context (flotilla.tracing)."""
    options = channel_options(ca_file, server_name)
    if ca_file:
        credentials = grpc.ssl_channel_credentials(root_certificates=_read(ca_file, "CA file"))
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    interceptors = tracing.sync_client_interceptors()
    return grpc.intercept_channel(channel, *interceptors) if interceptors else channel


StubT = TypeVar("StubT")


class _Signed:
    """One of a stub's methods, every call carrying the service token in its metadata."""

    def __init__(self, method: Any, signer: ServiceTokenSigner) -> None:
        self._method = method
        self._signer = signer
        self._token = ""
        self._bearer: tuple[tuple[str, str], ...] = ()

    def __call__(self, request: Any, *, metadata: Any = None, **options: Any) -> Any:
        token = self._signer.token()
        if token is not self._token:  # renewed every half lifetime: build the header once per token
            self._token, self._bearer = token, (("authorization", f"Bearer {token}"),)
        return self._method(request, metadata=(*(metadata or ()), *self._bearer), **options)


def signed(stub: StubT, signer: ServiceTokenSigner) -> StubT:
    """`stub` (a generated gRPC stub) with `signer`'s current token on every call, as call
    metadata: a grpcio aio client interceptor would cost every call an extra task and a copy of
    its details (about a fifth of a unary call's CPU)."""
    for name, method in vars(stub).items():
        setattr(stub, name, _Signed(method, signer))
    return stub


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return None


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


def _refusal(handler: Handler, message: str) -> Handler:
    """A handler of the same kind as `handler` that refuses the call as UNAUTHENTICATED."""

    async def refuse(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover  (abort raises)

    async def first_then_refuse(requests: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]) -> Any:
        # Aborting a client-streaming call before reading its first message races with the
        # client's write of it: grpcio then reports INTERNAL instead of our status.
        await _first_of(requests)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def first_then_refuse_stream(
        requests: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await _first_of(requests)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover  (abort raises)

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(first_then_refuse, **serializers)
    return grpc.stream_stream_rpc_method_handler(first_then_refuse_stream, **serializers)


async def _first_of(requests: AsyncIterator[Any], timeout_s: float = 1.0) -> None:
    """Read a client stream's first message (or give up after `timeout_s`, or on any error)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            async for _ in requests:
                return


class ServiceAuthInterceptor(aio.ServerInterceptor):
    """Refuses every call but health checks unless it carries a token `verifier` accepts."""

    def __init__(self, verifier: ServiceTokenVerifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        try:
            self._verifier.verify(_bearer(details.invocation_metadata))
        except Unauthenticated as exc:
            return _refusal(handler, str(exc))
        return handler
