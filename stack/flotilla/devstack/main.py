"""`pants run services/ui`: the whole system on one machine (NATS, dispatcher, workers, gateway,
UI), each service its own process, until Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path

from flotilla.devstack._stack import LocalStack, StackConfig, stop_on_signals
from flotilla.devstack.config import StackSettings
from flotilla.lifecycle import exit_on_bad_configuration


def main() -> None:
    with exit_on_bad_configuration("stack"):
        settings = StackSettings()
    stop = stop_on_signals()
    stack = LocalStack(
        StackConfig(
            data_dir=Path(settings.data_dir),
            workers=settings.workers,
            nats_port=settings.nats_port,
            dispatcher_port=settings.dispatcher_port,
            gateway_port=settings.gateway_port,
            gateway_grpc_port=settings.gateway_grpc_port,
            ui_port=settings.ui_port,
            nats_server=settings.nats_server,
            dev_api_key=settings.dev_api_key,
            tls=settings.tls,
            tracing=settings,
        )
    )
    print("[flotilla] starting the local stack...", file=sys.stderr, flush=True)
    stack.start()
    stack.run_until(stop)


if __name__ == "__main__":
    main()
