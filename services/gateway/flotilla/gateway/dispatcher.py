"""The gateway's gRPC client of the dispatcher, and how its errors become HTTP answers."""

from __future__ import annotations

import grpc
from fastapi import Request
from fastapi.responses import JSONResponse
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flotilla.protocol import DISPATCHER_SERVICE, DispatcherStub

_HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


async def rpc_error_response(request: Request, error: Exception) -> JSONResponse:
    """The app's handler for gRPC errors from the dispatcher: its status code becomes HTTP's."""
    assert isinstance(error, aio.AioRpcError)
    status = _HTTP_STATUS.get(error.code(), 502)
    detail = error.details() or error.code().name
    if status in (502, 503, 504):
        detail = f"the dispatcher could not answer: {detail}"
    return JSONResponse({"detail": detail}, status_code=status)


class DispatcherClient:
    """One channel to the dispatcher for the gateway process's lifetime."""

    def __init__(self, address: str) -> None:
        self._channel = aio.insecure_channel(
            address,
            options=[("grpc.keepalive_time_ms", 20_000), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        self.stub = DispatcherStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def ready(self) -> bool:
        """The dispatcher answers and reports SERVING (which it does only while NATS is up)."""
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=DISPATCHER_SERVICE), timeout=1.0)
        except aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self._channel.close()
