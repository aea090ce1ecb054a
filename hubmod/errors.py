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

import contextlib
from collections.abc import Iterator


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


_CLI = {"active": False}  # set by the hubmod command, so messages name its flags instead of Python arguments


@contextlib.contextmanager
def cli_messages() -> Iterator[None]:
    """Inside, `option` names command-line flags (the ``hubmod`` command runs each command in it)."""
    before = _CLI["active"]
    _CLI["active"] = True
    try:
        yield
    finally:
        _CLI["active"] = before


def option(name: str, value: object = None, flag: str | None = None) -> str:
    """How the user sets option ``name`` where they are: ``--fit-split test`` on the command line,
    ``fit_split='test'`` in Python. ``flag`` is the command-line spelling when it is not the name's."""
    if _CLI["active"]:
        text = flag or "--" + name.replace("_", "-")
        return f"{text} {value}" if value is not None else text
    return f"{name}={value!r}" if value is not None else f"{name}="


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type's name): enough for a one-line error."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
