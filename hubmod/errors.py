"""The one exception type users see.

Everything that is the user's input being wrong (a class that does not exist, a repo that is
missing, weights that do not match their config) is raised as a `HubmodError` whose message is a
single line saying what is wrong and what to do. The CLI prints that line and exits non-zero;
anything else escaping is a bug in hubmod.
"""

from __future__ import annotations


class HubmodError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code: int = 1


class NotFoundError(HubmodError):
    """A repo, revision, file or class that does not exist."""

    exit_code = 2


class InvalidRepoError(HubmodError):
    """A repo whose files are missing, malformed, or inconsistent with each other."""

    exit_code = 3


class HubAccessError(HubmodError):
    """The hub refused or failed a request (auth, network, server error)."""

    exit_code = 4

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient  # a server error or dropped connection that may pass if repeated
