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
    """An input file or folder is missing, unreadable or not what it should be.

    Prediction, import, evaluation and compare raise it before any network runs or any file is
    written when every input fails; in a batch, a failing case is listed and the others go on.
    """


class OutputExistsError(IchsegError):
    """An output would overwrite existing files and ``overwrite`` was not given.

    Raised before any work starts (:func:`ichseg.atomic.check_output_dir`), and by ``resume``
    when the folder's results were made by another model folder or with other options.
    """


class OutputPathError(IchsegError):
    """An output path cannot be written: a file stands where a folder is needed (or the other
    way round), or the folder (or the nearest existing folder above it) is not writable.

    Raised by :func:`ichseg.atomic.check_output_dir` and :func:`ichseg.atomic.check_output_file`
    before anything is computed.
    """


class IntensityError(InputError):
    """A CT's voxel values are not finite Hounsfield units (NaN or infinite voxels, an 8-bit
    display export, values beyond any CT scale, DICOM without a usable rescale). Refused by
    :func:`ichseg.io.hu_checks.check_intensities` unless ``accept_intensities`` is given.
    """


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
