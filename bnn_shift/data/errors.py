"""Exceptions raised by the data loaders."""

from __future__ import annotations


class DataNotFoundError(FileNotFoundError):
    """A dataset could not be found locally nor fetched; the message says how to provide it."""


class ChecksumError(ValueError):
    """A file or decoded array does not match its recorded checksum."""


class IdxFormatError(ValueError):
    """A byte stream is not a well-formed IDX file."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction directory or is not a plain file."""


class FetchError(RuntimeError):
    """A download (npm pack or HTTP) failed."""
