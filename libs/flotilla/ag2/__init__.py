"""Running AG2 (classic `import autogen`) agents inside Flotilla workflows."""

from flotilla.ag2._bridge import SessionIOStream, bridge

__all__ = ["SessionIOStream", "bridge"]
