"""Error types shared by the library and the CLI.

The CLI maps them to exit codes: ``InputError`` (the user's input is wrong: missing file,
undecodable video, mask of the wrong size, empty mask, box off-frame, existing output) exits 2,
any other ``VosctlError`` exits 1. Messages are one line and name the problem.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # what str.splitlines() breaks on, and escapes


def one_line(message: object) -> str:
    """``message`` with control characters escaped (``\\n``, ``\\r``, ``\\x1b``...), so that a
    file name or a box string holding a newline cannot split an error into several lines."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], str(message))


class VosctlError(Exception):
    """A failure vosctl can explain in one line (exit code 1)."""

    exit_code = 1


class InputError(VosctlError):
    """The user's input is unusable (exit code 2); nothing has been written."""

    exit_code = 2


class CheckpointError(VosctlError):
    """A model checkpoint is missing, unreadable or incompatible with this version (exit code 2)."""

    exit_code = 2


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` (settings' range checks)."""
    if not condition:
        raise InputError(message)
