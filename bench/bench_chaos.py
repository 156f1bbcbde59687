"""The chaos suite's long form: many fault rounds, mixed, on the drill's stack (tests/chaos/drill.py:
an R3 cluster, a worker in a network namespace), every run checked (tests/chaos/checks.py).

    ./pants run bench:chaos -- [--rounds 100] [--faults worker_kill,nats_restart] [--seed 1]
                               [--json report.json] [--logs DIR]

Each round strikes with one fault while its runs wait on a person; the faults go round in a
shuffled order so that every fault gets its share. Prints the report (rounds, runs, each
check's failures, takeover time p50/p95) and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

from chaos.drill import Drill, Report, chaos_stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--faults", default="", help="comma-separated subset of the faults (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-order", action="store_true", help="the faults in their listed order, not shuffled")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    parser.add_argument("--logs", type=Path, help="copy the services' logs here at the end")
    args = parser.parse_args()
    report = Report()
    started = time.monotonic()
    with chaos_stack() as (stack, host):
        drill = Drill(stack, host, report, seed=args.seed)
        faults = [f for f in drill.faults() if not args.faults or f in args.faults.split(",")]
        if host is None:
            report.skipped.append("netns_cut: network namespaces cannot be made here")

        async def rounds() -> None:
            order: list[str] = []
            try:
                for n in range(args.rounds):
                    if not order:
                        order = list(faults)
                        if not args.in_order:
                            drill.random.shuffle(order)
                        order.reverse()  # popped from the end
                    fault = order.pop()
                    began = time.monotonic()
                    await drill.round(fault)
                    print(
                        f"round {n + 1}/{args.rounds} {fault:<16} {time.monotonic() - began:5.1f} s"
                        f"  runs {report.runs}  failures {report.failed()}",
                        flush=True,
                    )
            finally:
                await drill.close()

        try:
            asyncio.run(rounds())
        finally:
            if args.logs and stack.config.log_dir:
                shutil.copytree(stack.config.log_dir, args.logs, dirs_exist_ok=True)
            print(f"\n{report.text()}\nwall time {time.monotonic() - started:.0f} s", flush=True)
            if args.json:
                args.json.write_text(json.dumps(report.as_json(), indent=2))
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
