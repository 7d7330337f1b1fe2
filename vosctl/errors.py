"""Error types shared by the library and the CLI.

The CLI maps them to exit codes: ``InputError`` (the user's input is wrong: missing file,
undecodable video, mask of the wrong size, empty mask, box off-frame, existing output) exits 2,
any other ``VosctlError`` exits 1. Messages are one line and name the problem.
"""

from __future__ import annotations


class VosctlError(Exception):
    """A failure vosctl can explain in one line (exit code 1)."""

    exit_code = 1


class InputError(VosctlError):
    """The user's input is unusable (exit code 2); nothing has been written."""

    exit_code = 2


class CheckpointError(VosctlError):
    """A model checkpoint is missing, unreadable or incompatible with this version (exit code 2)."""

    exit_code = 2
