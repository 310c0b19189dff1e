"""The project's one exception type for bad input.

Every error a user can cause -- an option out of range, a malformed file, a
run directory in use -- is raised as :class:`SparsetopoError` with a message
that names the option or file, what is allowed and what was given. It
subclasses ``ValueError`` so ``except ValueError`` keeps working. The CLI
prints it (and ``OSError``) as one line and exits with status 2.
"""

from __future__ import annotations

import os

__all__ = ["SparsetopoError", "FileFormatError", "file_error"]


class SparsetopoError(ValueError):
    """Bad input, described in the message."""


class FileFormatError(SparsetopoError):
    """A file that cannot be read as what it should be: ``FILE: what is wrong``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def file_error(path: str | os.PathLike, problem: str) -> FileFormatError:
    return FileFormatError(path, problem)
