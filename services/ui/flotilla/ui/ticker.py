"""The `<flotilla-ticker>` web component (ticker.js): drives the page's live updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mesop as me


def _ticker(*, active: bool, tick: int, delay_ms: int, on_tick: Callable[[me.WebEvent], Any], key: str) -> Any:
    """Fires `on_tick` `delay_ms` after each change of `tick`, while `active`."""
    return me.insert_web_component(
        name="flotilla-ticker",
        key=key,
        events={"tickEvent": on_tick},
        properties={"active": active, "tick": tick, "delayMs": delay_ms},
    )


# Registers ticker.js (found relative to this module) with Mesop; called, not used as a decorator,
# because Mesop's decorator is untyped.
ticker: Callable[..., Any] = me.web_component(path="./ticker.js", skip_validation=True)(_ticker)
