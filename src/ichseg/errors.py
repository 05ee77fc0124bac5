"""Errors a user can cause and fix.

Every expected failure is an :class:`IchsegError` whose message names the file or object and the
problem in one line. The command line prints that line and exits with code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class IchsegError(Exception):
    """A problem with the user's input, files or options."""

    exit_code = 2


class InputError(IchsegError):
    """An input file or folder is missing, unreadable or not what it should be."""


class OutputExistsError(IchsegError):
    """An output would overwrite existing files and ``overwrite`` was not given."""


class RecipeError(IchsegError):
    """A recipe is unknown or malformed."""


class WorkspaceError(IchsegError):
    """The workspace lacks what a step needs (a data set, plans, a trained model)."""


class ModelError(IchsegError):
    """A trained model folder is incomplete or does not fit the request."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries' messages span many), or its type."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
