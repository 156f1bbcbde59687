import flotilla.llm

PUBLIC = {
    "LlmSettings", "ModelPrice", "LlmError", "LlmConfigError", "ModelFetchError", "ScriptExhausted",
    "Backend", "Completion", "Message", "Tool", "ToolCall", "create_backend",
    "LocalBackend", "OpenAIBackend", "ScriptedBackend", "ScriptedReply", "load_script",
    "BUNDLED_MODEL", "BundledModel", "ensure_local_model",
    "LlmService",
    "FlotillaModelClient", "FlotillaResponse", "group_chat_options", "llm_config", "register_llm",
    "LlmRun", "Recorder", "Replay", "current_run", "llm_run", "request_digest", "DeltaSink", "TextDelta",
}  # fmt: skip


def test_no_public_name_disappears() -> None:
    assert set(flotilla.llm.__all__) == PUBLIC
    assert all(hasattr(flotilla.llm, name) for name in PUBLIC)
