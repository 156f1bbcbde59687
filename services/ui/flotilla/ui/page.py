"""The UI's pages. A placeholder until the chat UI lands: it shows where the API is."""

from __future__ import annotations

import os

import mesop as me

GATEWAY_URL_ENV = "FLOTILLA_UI_GATEWAY_URL"


@me.page(path="/", title="Flotilla")
def index() -> None:
    gateway = os.environ.get(GATEWAY_URL_ENV, "http://127.0.0.1:8000")
    with me.box(style=me.Style(padding=me.Padding.all(24), font_family="sans-serif")):
        me.text("Flotilla", type="headline-4")
        me.text("AG2 multi-agent workflows, served over NATS JetStream.")
        me.markdown(
            f"The chat UI is on its way. Meanwhile, drive runs over the REST + WebSocket API at "
            f"`{gateway}/v1` — its OpenAPI page is [{gateway}/docs]({gateway}/docs)."
        )
