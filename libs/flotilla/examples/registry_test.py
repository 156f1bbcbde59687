from __future__ import annotations

from flotilla.examples import registry
from flotilla.examples.benchmarks import registry as benchmarks
from flotilla.examples.benchmarks import with_examples


def test_a_default_deployment_serves_no_benchmark_workflow() -> None:
    served = {info.name for info in registry.infos()}
    assert served == {"learning_chat", "tool_approval", "group_chat", "support_desk"}
    assert {info.name for info in benchmarks.infos()} == {"load", "load_sync"}


def test_with_examples_serves_both() -> None:
    served = {info.name for info in with_examples.infos()}
    assert served == {"learning_chat", "tool_approval", "group_chat", "support_desk", "load", "load_sync"}
