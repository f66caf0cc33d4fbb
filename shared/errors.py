"""Errors that become command replies.

Every failure a caller can see has a stable ``code`` (documented in README.md) and a message a
person can act on. Domain code raises these; the command runtime turns them into replies.
"""
from __future__ import annotations

#: The stable error codes of command and query replies.
CODES = {
    "invalid": "the message is malformed or a field is missing or wrong; fix the request",
    "not_found": "a referenced compound, household, resident, arrival, … does not exist",
    "conflict": "the stream changed since you read it (expected_version) or the id is taken",
    "rejected": "valid, but the domain rules refuse it now; see `reason`",
    "unknown_command": "no such command on this service",
    "too_large": "the payload is larger than the service accepts",
    "unauthenticated": "no identity the service can trust came with the request; connect with Cordon credentials",
    "forbidden": "the identity may not do this here (another community, a command or query not granted, "
                 "an actor not its own); nothing was written",
    "unavailable": "a dependency (PostgreSQL) is down; retry with the same command_id",
    "internal": "a bug; the command was not applied; report it with the correlation id",
}


class CommandError(Exception):
    """A command or query that fails with a stable code; nothing was written."""

    code = "internal"

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason

    def to_reply(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.reason is not None:
            error["reason"] = self.reason
        return {"ok": False, "error": error}


class Invalid(CommandError):
    code = "invalid"


class NotFound(CommandError):
    code = "not_found"


class Conflict(CommandError):
    code = "conflict"


class Rejected(CommandError):
    """The domain refuses the command; ``reason`` is a stable snake_case sub-code."""

    code = "rejected"


class UnknownCommand(CommandError):
    code = "unknown_command"


class TooLarge(CommandError):
    code = "too_large"


class Unavailable(CommandError):
    code = "unavailable"
