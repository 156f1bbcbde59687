"""The LLM layer's errors, under Flotilla's one error tree."""

from __future__ import annotations

from flotilla.errors import ConfigurationError, FlotillaError


class LlmError(FlotillaError):
    """A completion could not be produced (the backend failed, the script ran out, ...)."""


class LlmConfigError(ConfigurationError):
    """The LLM settings cannot work; the message names the variables to set."""


class ModelFetchError(LlmError):
    """The bundled model could not be downloaded, or it did not verify."""


class ScriptExhausted(LlmError):
    """The scripted backend has no reply left and is not set to cycle."""
