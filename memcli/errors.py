"""The one user-facing exception type, and the documented exit codes.

Every expected failure is raised as :class:`MemcliFailure` with a message that says what went wrong
and a hint that says what to do next. The CLI catches it in one place (``memcli.cli.app.main``) and
prints it without a traceback: tracebacks carry local variables, and ours hold the user's memories.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``memcli`` command (documented in the README)."""

    OK = 0
    INTERNAL = 1  # a bug: please report it
    USAGE = 2  # bad arguments (also Click's own code)
    NOT_FOUND = 3  # an id, file or space that does not exist
    CONFIG = 4  # malformed config file or environment variable
    MODEL = 5  # no model, wrong model, model failed to load
    STORE = 6  # store unreadable, locked, created by another embedding model
    PARTIAL = 7  # the job finished but skipped some input (see the summary)
    NETWORK = 8  # a download the user asked for failed, or the configured chat server is unreachable/refuses
    BUSY = 9  # another `memcli consolidate` holds its lock (cron overlap); nothing was done
    OVER_BUDGET = 10  # an unattended run would take out more than [lifecycle] max_change_fraction; nothing destructive was done
    NO_EFFECT = 11  # the plan said it would change the store and nothing changed: a write path is broken
    INTERRUPTED = 130  # Ctrl-C; what was committed stays consistent


class MemcliFailure(Exception):
    """An expected failure, with what to do next.

    ``message`` says what happened, ``hint`` what the user can do about it, ``code`` is the exit code.
    """

    def __init__(self, message: str, *, hint: str = "", code: ExitCode = ExitCode.INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def not_found(message: str, hint: str = "") -> MemcliFailure:
    return MemcliFailure(message, hint=hint, code=ExitCode.NOT_FOUND)


def config_error(message: str, hint: str = "") -> MemcliFailure:
    return MemcliFailure(message, hint=hint, code=ExitCode.CONFIG)


def model_error(message: str, hint: str = "") -> MemcliFailure:
    return MemcliFailure(message, hint=hint, code=ExitCode.MODEL)


def store_error(message: str, hint: str = "") -> MemcliFailure:
    return MemcliFailure(message, hint=hint, code=ExitCode.STORE)


def usage_error(message: str, hint: str = "") -> MemcliFailure:
    return MemcliFailure(message, hint=hint, code=ExitCode.USAGE)
