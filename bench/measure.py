"""What the benchmarks measure with: percentiles, and a process's memory and CPU from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from flotilla.devstack import StackConfig
from flotilla.settings import TracingSettings

BENCHMARKS = "flotilla.examples.benchmarks:registry"
"""The workers of a benchmark's stack serve `load` and `load_sync` (no default deployment does)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms_summary(values: list[float], quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)) -> str:
    """`p50 1.23 ms  p95 ...` of durations given in seconds."""
    return "  ".join(f"p{int(q * 100)} {percentile(values, q) * 1000:7.2f} ms" for q in quantiles)


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_config(
    data: Path, *, workers: int = 1, workflows: str = BENCHMARKS, tls: bool = True, **env: str
) -> StackConfig:
    """A benchmark's local stack: free ports, no UI, quiet logs, no rate limits, `workflows` served;
    traces exported when the environment names an OTLP endpoint (FLOTILLA_OTLP_ENDPOINT, flotilla.tracing)."""
    return StackConfig(
        data_dir=data / "data",
        log_dir=data / "logs",
        workers=workers,
        with_ui=False,
        tls=tls,
        nats_port=0,
        dispatcher_port=0,
        gateway_port=0,
        gateway_grpc_port=0,
        ui_port=0,
        nats_monitor_port=0,
        env={
            "FLOTILLA_LOG_LEVEL": "warning",
            "FLOTILLA_WORKER_WORKFLOWS": workflows,
            "FLOTILLA_GATEWAY_RATE_LIMIT_PER_S": "1000000",
            "FLOTILLA_GATEWAY_RATE_LIMIT_BURST": "1000000",
            **env,
        },
        tracing=TracingSettings(),
    )
