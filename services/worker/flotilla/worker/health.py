"""The worker's probe: `python -m flotilla.worker.health` exits 0 while the worker is healthy.

Healthy: the file FLOTILLA_WORKER_HEALTH_FILE was rewritten within three heartbeats. The worker
rewrites it from its event loop only while NATS is connected and it pulls jobs (flotilla.execution).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flotilla.settings import WorkerSettings


def check(settings: WorkerSettings, *, now: float | None = None) -> str | None:
    """Why the worker is unhealthy, or None when it is healthy."""
    if not settings.health_file:
        return "FLOTILLA_WORKER_HEALTH_FILE is not set"
    try:
        age = (time.time() if now is None else now) - Path(settings.health_file).stat().st_mtime
    except OSError as exc:
        return f"no health file ({exc.strerror}): not connected to NATS or not pulling yet"
    limit = 3 * settings.heartbeat_s
    if age > limit:
        return f"health file is {age:.0f}s old (limit {limit:.0f}s): event loop stuck, NATS lost or not pulling"
    return None


def main() -> None:
    problem = check(WorkerSettings())
    if problem is not None:
        print(problem, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
