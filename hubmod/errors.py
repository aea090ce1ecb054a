"""The one exception type users see.

Everything that is the user's input being wrong (a class that does not exist, a repo that is
missing, weights that do not match their config) is raised as a `HubmodError` whose message is a
single line saying what is wrong and what to do. The CLI prints that line and exits non-zero;
anything else escaping is a bug in hubmod.

Exit codes of the ``hubmod`` command (one table, also in the README and docs):

====  ==============================================================================
0     success
1     bad input: an option value outside what it allows, an unknown method or preset
2     usage error: a missing argument or an unknown flag (from the command-line parser)
3     not found: a repo, revision, file, path, dataset or class that does not exist
4     damaged repo: files missing, malformed or inconsistent with each other
5     hub failure: the hub refused or failed a request (auth, network, server error)
130   interrupted (Ctrl-C); nothing half-written was published
====  ==============================================================================
"""

from __future__ import annotations


class HubmodError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code: int = 1


class NotFoundError(HubmodError):
    """A repo, revision, file, path, dataset or class that does not exist."""

    exit_code = 3


class InvalidRepoError(HubmodError):
    """A repo whose files are missing, malformed, or inconsistent with each other."""

    exit_code = 4


class HubAccessError(HubmodError):
    """The hub refused or failed a request (auth, network, server error)."""

    exit_code = 5

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient  # a server error or dropped connection that may pass if repeated
