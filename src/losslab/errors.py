"""The user-error family: what a person gave that cannot be used, said in one line.

Every error of this family means "the input is wrong, the program is not": a config key, an
option value, a missing data set or run, a corrupt checkpoint. The ``losslab`` command prints
them as one line (``losslab: error: ...``, exit status 2); any other exception is a bug and
keeps its traceback. Each class also subclasses the built-in exception a caller would
naturally catch (a bad value *is* a ``ValueError``, a missing file a ``FileNotFoundError``),
so generic handlers keep working. Messages name the key, file or value and what was expected.
"""

from __future__ import annotations

__all__ = ["LosslabError", "InputError", "NotFoundError", "ConfigError", "MissingFileError",
           "OptionTypeError", "DependencyError",
           "CheckpointCorruptError", "CorruptFileError", "BusyError", "message_of"]


class LosslabError(Exception):
    """The base of every user error losslab raises."""


class InputError(LosslabError, ValueError):
    """An argument or option value that is not what was expected (the message says what)."""


class NotFoundError(LosslabError, KeyError):
    """A name the user gave (a parameter, a layer, a variant, a metric) that does not exist;
    the message lists the nearest names."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(InputError):
    """A configuration that cannot be used; the message says which key and why."""


class MissingFileError(LosslabError, FileNotFoundError):
    """A file or directory the user named (a run, a checkpoint, a config) is not there."""


class CheckpointCorruptError(LosslabError, RuntimeError):
    """A checkpoint's weights file is unreadable or does not match its recorded hash."""


def message_of(error: BaseException) -> str:
    """The one line the command prints for a user error."""
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())  # one line, whatever the message held


class OptionTypeError(InputError, TypeError):
    """An option of the wrong type (also a ``TypeError``, like a wrong argument's)."""


class DependencyError(LosslabError, ImportError):
    """An optional dependency a chosen feature needs is not installed; says what to install."""


class CorruptFileError(LosslabError, ValueError):
    """A stored file (a run's config, meta or metrics, a study's plan, an analysis result) that
    cannot be read as what losslab wrote there; the message names the file and what was expected."""


class BusyError(LosslabError, RuntimeError):
    """A run or study directory another process is writing; the message names the holder."""
