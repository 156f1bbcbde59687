from __future__ import annotations

from collections.abc import Iterator

import pytest

from flotilla.devstack import LocalStack
from support import local_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """One shared stack for tests that only need fresh runs (each test uses its own run ids)."""
    with local_stack(workers=2) as running:
        yield running
