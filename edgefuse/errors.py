"""Errors about the user's inputs. The CLI prints them as one line each, without a stack trace.

Each names what is wrong precisely enough to act on: the file, the dotted config path, the tensor or the message.
"""

from __future__ import annotations


class EdgefuseError(Exception):
    """Base class for errors caused by inputs from outside (configs, data, bundles, messages)."""


class DataError(EdgefuseError):
    """A dataset file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: object, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class BundleError(EdgefuseError):
    """A model bundle (or TensorRT engine) that is missing, altered, or does not fit this host."""


class InputError(EdgefuseError):
    """An inference input of the wrong name, shape or dtype; the message names the tensor."""
