"""What a run's LLM calls used, per model: summed from its `llm_completion` events (those of
earlier attempts, read from the log, and this attempt's), so a takeover loses none of it."""

from __future__ import annotations

from collections.abc import Iterable

from flotilla.protocol import LlmCompletion, ModelUsage


class UsageTally:
    def __init__(self) -> None:
        self._by_model: dict[str, ModelUsage] = {}

    @classmethod
    def of(cls, completions: Iterable[LlmCompletion]) -> UsageTally:
        tally = cls()
        for completion in completions:
            tally.add(completion)
        return tally

    def add(self, completion: LlmCompletion) -> None:
        usage = self._by_model.setdefault(completion.model, ModelUsage(model=completion.model))
        usage.calls += 1
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        usage.llm_seconds += completion.latency_s
        usage.cost += completion.cost

    def merged(self, other: UsageTally) -> UsageTally:
        tally = UsageTally()
        for usage in [*self._by_model.values(), *other._by_model.values()]:
            into = tally._by_model.setdefault(usage.model, ModelUsage(model=usage.model))
            into.calls += usage.calls
            into.prompt_tokens += usage.prompt_tokens
            into.completion_tokens += usage.completion_tokens
            into.llm_seconds += usage.llm_seconds
            into.cost += usage.cost
        return tally

    def as_list(self) -> list[ModelUsage]:
        """Per model, in name order."""
        return [self._by_model[model] for model in sorted(self._by_model)]
