"""A property-based run (schemathesis) against the live gateway's OpenAPI: no 5xx, every status
code documented, responses conform to their schemas."""

from __future__ import annotations

import subprocess
import sys

from flotilla.devstack import LocalStack

# Checks left out, and why:
# - allow_header_conformance: Starlette answers 405 with only the methods of the first route
#   that matched the path (`Allow: POST` on /v1/runs, which also has GET).
# - ensure_resource_availability: "created resource not found" when it answers a run it just
#   created with a random request_id; that 404 means "no such question", which is right.
# - negative_data_rejection: an oversized body gets 413 (what the API promises), which it counts
#   as accepting bad data.
EXCLUDED = "allow_header_conformance,ensure_resource_availability,negative_data_rejection"
# /readyz is left out: its 503 is its answer (`?min_workflows=99999`: "not ready"), which the fuzzer
# counts as a server error. Its behaviour is tested in test_api.py.
EXCLUDED_PATHS = ["/readyz"]


def test_openapi_fuzz_finds_no_server_error_or_schema_violation(stack: LocalStack) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{stack.gateway_url}/openapi.json",
            "--header", f"Authorization: Bearer {stack.dev_api_key}",
            "--checks", "all", "--exclude-checks", EXCLUDED,
            *(f"--exclude-path={path}" for path in EXCLUDED_PATHS),
            "--max-examples", "25", "--seed", "1", "--no-color",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout[-3000:]
    print(summary)
    assert done.returncode == 0, summary
    assert "generated" in summary
