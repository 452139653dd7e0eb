"""Errors raised while finding, reading or downloading a data set.

They belong to losslab's user-error family (:mod:`losslab.errors`) and subclass the built-in
exception a caller would naturally catch (a missing set *is* a ``FileNotFoundError``, a corrupt
file a ``ValueError``), so generic handlers keep working, while the messages carry what a
person needs to fix the problem.
"""

from __future__ import annotations

from losslab.errors import InputError, LosslabError, MissingFileError

__all__ = ["DatasetNotFoundError", "DatasetFormatError", "ChecksumError", "DownloadError"]


class DatasetNotFoundError(MissingFileError):
    """A data set's files are missing or incomplete under the data root.

    The message names every path searched, the files expected, which are missing, and how
    to get them (``download=True`` or the official address).
    """


class DatasetFormatError(InputError):
    """A data file exists but is not in the expected format (bad magic number, truncated...)."""


class ChecksumError(LosslabError, OSError):
    """A downloaded file's checksum differs from the expected one; nothing was kept."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"checksum mismatch for {url}: expected md5 {expected}, got {actual}; "
                         "the download was discarded (a corrupt transfer or a changed mirror)")
        self.url, self.expected, self.actual = url, expected, actual

    def __reduce__(self) -> tuple:
        # Rebuild from the fields (the default would call __init__ with the message alone),
        # so the error survives pickling across processes.
        return (type(self), (self.url, self.expected, self.actual))


class DownloadError(LosslabError, OSError):
    """A download that could not complete (no connection, an HTTP error); nothing was kept.

    ``url`` is the address, ``reason`` what went wrong (``"HTTP 404 (Not Found)"``,
    ``"cannot connect (Connection refused)"``) and ``status`` the HTTP status, if one came.
    """

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"downloading {url} failed: {reason}; nothing was kept")
        self.url, self.reason, self.status = url, reason, status

    def __reduce__(self) -> tuple:
        # as ChecksumError: rebuilt from the fields when pickled across processes
        return (type(self), (self.url, self.reason, self.status))
