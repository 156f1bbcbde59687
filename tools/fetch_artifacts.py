"""Fetches the locked artifacts this machine needs into a local store, then points the lock at them.

Pex downloads a locked artifact by running `pip download` on its URL, and reports only the last
line of pip's output when that fails (a bare `AssertionError`, for one). So the build does its
fetching here instead, once, before Pants needs anything:

    python3.11 tools/fetch_artifacts.py --store DIR ORIGIN_LOCK=LOCK [ORIGIN_LOCK=LOCK ...]

For each locked requirement, the artifact pex would pick for this interpreter (the wheel whose tag
ranks best, else the sdist) is downloaded into DIR/<sha256>/<filename> with retries and backoff,
and checked against the lock's sha256. LOCK is then ORIGIN_LOCK with those artifacts' URLs
replaced by `file://` URLs into the store, which pex copies without pip or network. Artifacts this
machine does not need (other platforms) keep their URLs.

A failure names the artifact, its URL, the HTTP status or the network error, and every attempt.
Standard library only: it runs before any of the project's dependencies exist.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import importlib
import json
import os
import random
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libs"))
from flotilla.hermetic_pip import system_ca_bundle  # noqa: E402  (needs the path above)

USER_AGENT = "flotilla-fetch-artifacts/1"
PERMANENT_HTTP = frozenset(range(400, 500)) - {408, 425, 429}
"""Client errors that another attempt cannot fix (404, 403, ...); everything else is retried."""


class FetchError(Exception):
    """An artifact could not be fetched; the message says why, for a person to read."""


@dataclass(frozen=True)
class Artifact:
    project: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlparse(self.url).path.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    base_delay_s: float = 1.0
    timeout_s: float = 60.0

    def delays(self) -> Iterator[float]:
        """Exponential backoff with jitter between attempts: ~1, 2, 4, 8 s by default."""
        for attempt in range(self.attempts - 1):
            yield self.base_delay_s * 2**attempt * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)


def compatible_tags() -> list[str]:
    """This interpreter's wheel tags, most specific first (the order pex ranks wheels by)."""
    for module in ("pip._vendor.packaging.tags", "packaging.tags"):
        try:
            tags: Any = importlib.import_module(module)
        except ImportError:
            continue
        return [str(tag) for tag in tags.sys_tags()]
    raise FetchError(f"{sys.executable} has neither pip nor packaging to tell its wheel tags; install python3-pip")


def read_lock(path: Path) -> tuple[list[str], dict[str, Any]]:
    """A Pants lockfile: its `//` header lines, and pex's JSON lock below them."""
    header: list[str] = []
    body: list[str] = []
    for line in path.read_text().splitlines():
        (header if line.startswith("//") and not body else body).append(line)
    return header, json.loads("\n".join(body))


def wheel_tags(filename: str) -> set[str]:
    """`name-ver(-build)?-py-abi-plat.whl` → every `py-abi-plat` it expands to."""
    python, abi, platform = filename[: -len(".whl")].split("-")[-3:]
    return {f"{p}-{a}-{pl}" for p in python.split(".") for a in abi.split(".") for pl in platform.split(".")}


def pick(artifacts: Iterable[dict[str, str]], rank: dict[str, int]) -> dict[str, str] | None:
    """The artifact pex would use here: the best-ranked compatible wheel, else an sdist."""
    best: tuple[int, dict[str, str]] | None = None
    sdist = None
    for artifact in artifacts:
        name = Artifact("", artifact["url"], "").filename
        if name.endswith(".whl"):
            ranks = [rank[tag] for tag in wheel_tags(name) if tag in rank]
            if ranks and (best is None or min(ranks) < best[0]):
                best = (min(ranks), artifact)
        elif name.endswith((".tar.gz", ".zip")):
            sdist = sdist or artifact
    return best[1] if best else sdist


def needed(lock: dict[str, Any], tags: list[str]) -> Iterator[tuple[dict[str, str], Artifact]]:
    """(the lock's artifact entry, what to fetch for it) for each requirement this machine needs."""
    rank = {tag: index for index, tag in enumerate(tags)}
    for resolve in lock["locked_resolves"]:
        for requirement in resolve["locked_requirements"]:
            entry = pick(requirement["artifacts"], rank)
            if entry is None or entry["url"].startswith("file://"):
                continue
            if entry["algorithm"] != "sha256":
                raise FetchError(f"{entry['url']}: the lock gives a {entry['algorithm']} hash; only sha256 is checked")
            yield entry, Artifact(requirement["project_name"], entry["url"], entry["hash"])


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        body = error.read(300).decode("utf-8", "replace").strip()
        return f"HTTP {error.code} {error.reason}" + (f": {body}" if body else "")
    if isinstance(error, urllib.error.URLError):
        return f"{type(error.reason).__name__}: {error.reason}"
    return f"{type(error).__name__}: {error}"


def _download(artifact: Artifact, into: Path, context: ssl.SSLContext, timeout_s: float) -> None:
    """One attempt: stream to a temporary file, check size and sha256, then rename into place."""
    # The lock's own URLs (https from the index, or file:// for a local mirror): both are wanted.
    request = urllib.request.Request(artifact.url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    digest = hashlib.sha256()
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=into, prefix=".part-", delete=False) as part:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310
                expected = response.headers.get("Content-Length")
                size = 0
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    part.write(chunk)
                    size += len(chunk)
            if expected is not None and size != int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - size)
            if digest.hexdigest() != artifact.sha256:
                raise ValueError(f"sha256 {digest.hexdigest()} where the lock expects {artifact.sha256}")
            os.replace(part.name, into / artifact.filename)
        finally:
            if os.path.exists(part.name):
                os.unlink(part.name)


def fetch(artifact: Artifact, store: Path, context: ssl.SSLContext, retry: Retry) -> Path:
    """The artifact's path in the store, downloading it first if it is not there."""
    into = store / artifact.sha256
    target = into / artifact.filename
    if target.is_file():
        return target
    failures: list[str] = []
    delays = retry.delays()
    while True:
        try:
            _download(artifact, into, context, retry.timeout_s)
            if failures:
                log(f"{artifact.filename}: fetched on attempt {len(failures) + 1}")
            return target
        except (OSError, ValueError, http.client.HTTPException) as error:
            failures.append(_describe(error))
            permanent = isinstance(error, urllib.error.HTTPError) and error.code in PERMANENT_HTTP
            delay = None if permanent else next(delays, None)
            if delay is None:
                proxy = urllib.request.getproxies().get(urllib.parse.urlparse(artifact.url).scheme)
                raise FetchError(
                    f"{artifact.project}: could not fetch {artifact.url}"
                    + (f" (through the proxy {proxy})" if proxy else "")
                    + "\n"
                    + "\n".join(f"    attempt {n}: {reason}" for n, reason in enumerate(failures, 1))
                ) from error
            log(f"{artifact.filename}: attempt {len(failures)} failed ({failures[-1]}); retrying in {delay:.1f} s")
            time.sleep(delay)


def localize(origin: Path, target: Path, store: Path, context: ssl.SSLContext, retry: Retry, jobs: int) -> int:
    """Writes `target`: `origin` with every artifact this machine needs fetched and made local.
    Returns how many artifacts had to be downloaded."""
    header, lock = read_lock(origin)
    work = list(needed(lock, compatible_tags()))
    missing = sum(not (store / artifact.sha256 / artifact.filename).is_file() for _, artifact in work)
    if missing:
        log(f"{origin.name}: fetching {missing} of the {len(work)} artifacts this machine needs into {store}")
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(entry, pool.submit(fetch, artifact, store, context, retry)) for entry, artifact in work]
        for entry, future in futures:
            try:
                entry["url"] = future.result().as_uri()
            except FetchError as error:
                errors.append(str(error))
    if errors:
        raise FetchError(
            f"{len(errors)} of {len(work)} artifacts of {origin.name} could not be fetched:\n" + "\n".join(errors)
        )
    text = "\n".join(header) + "\n" + json.dumps(lock, indent=2, sort_keys=True) + "\n"
    if not target.is_file() or target.read_text() != text:
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(text)
        os.replace(partial, target)
    return missing


def log(message: str) -> None:
    print(f"[fetch-artifacts] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="where fetched artifacts are kept, by sha256")
    parser.add_argument("--cafile", help="CA bundle for HTTPS (default: the system's)")
    parser.add_argument("--attempts", type=int, default=5, help="tries per artifact (default 5)")
    parser.add_argument("--base-delay", type=float, default=1.0, help="first backoff in seconds, doubling after")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before an attempt fails")
    parser.add_argument("--jobs", type=int, default=8, help="parallel downloads")
    parser.add_argument("--print-ca-bundle", action="store_true", help="print the system CA bundle's path and exit")
    parser.add_argument("locks", nargs="*", metavar="ORIGIN=TARGET", help="lock to read = lock to write")
    args = parser.parse_args(argv)
    cafile = args.cafile or system_ca_bundle()
    if args.print_ca_bundle:
        if cafile is None:
            return 1
        print(cafile)
        return 0
    if args.store is None or not args.locks:
        parser.error("--store and at least one ORIGIN=TARGET are required")
    context = ssl.create_default_context(cafile=cafile)
    retry = Retry(attempts=max(1, args.attempts), base_delay_s=args.base_delay, timeout_s=args.timeout)
    try:
        for pair in args.locks:
            origin, _, target = pair.partition("=")
            if localize(Path(origin), Path(target or origin), args.store, context, retry, args.jobs):
                log(f"{Path(target or origin).name}: every artifact is local and verified")
    except FetchError as error:
        log(f"FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
