"""The error tree. The HTTP layer maps these to responses in one place, the CLI to exit codes.

ClickloopError
├── ConfigError            settings or arguments that cannot work
├── NotFound               an entity looked up by id, alias or name does not exist
├── InvalidInput           a value supplied by a user or a partner is unusable (field, reason)
├── Conflict               a unique name or alias is already taken
└── StorageUnavailable     the database cannot be reached or refused the write (retry later)
"""

from __future__ import annotations


class ClickloopError(Exception):
    """Root of every error clickloop raises on purpose."""


class ConfigError(ClickloopError):
    """Settings or command-line arguments that cannot work."""


class NotFound(ClickloopError):
    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} not found: {key}")
        self.kind = kind
        self.key = key


class InvalidInput(ClickloopError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Conflict(ClickloopError):
    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} already exists: {key}")
        self.kind = kind
        self.key = key


class StorageUnavailable(ClickloopError):
    """The database is down, locked for too long or out of space; nothing was written."""
