"""Errors the tool reports to its user as one clear message (never a traceback).

The CLI maps each to an exit status: input and guard errors mean the run was unusable
or stopped before sending (2); configuration errors too (2).
"""

from __future__ import annotations


class CustomerSyncError(Exception):
    """Base of every error that is shown to the user as a message, not a traceback."""

    exit_status = 2


class InputError(CustomerSyncError):
    """An input file cannot be used at all (missing, unreadable, wrong shape)."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        self.problem = problem
        super().__init__(f"{file}: {problem}")


class GuardTripped(CustomerSyncError):
    """A safety guard stopped the run before anything was sent."""


class ConfigError(CustomerSyncError):
    """The run's configuration is wrong (URL, credentials, options)."""
