"""SIGTERM handled as Ctrl-C is: one code path for every way a process is asked to stop.

Python turns SIGINT into :class:`KeyboardInterrupt`, and losslab's clean-up is written against
it: a run interrupted mid-epoch records status ``interrupted`` in ``meta.json`` (its state on
disk resumes), an atomic write removes its ``.tmp`` file, a study's driver stops its workers in
``finally``. SIGTERM, what ``kill``, a batch scheduler, ``docker stop`` or the local backend's
``stop()`` send, has no Python handler by default: the process dies where it stands, and all of
that clean-up is skipped (``meta.json`` left ``running``, stray ``.tmp`` files). Raising
:class:`Terminated`, a :class:`KeyboardInterrupt`, from a SIGTERM handler gives SIGTERM the same
clean-up with no second code path to keep in step; code that must tell the two apart catches
:class:`Terminated` first. A process that exits because of it should exit with status 143
(128 + SIGTERM), as a shell reports a process killed by the signal.

Like KeyboardInterrupt, the exception arrives in the main thread, between two Python bytecodes
(a long C call, a torch kernel, finishes first). Only the main thread can install a handler;
elsewhere :func:`sigterm_as_interrupt` does nothing and says so in its result.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["Terminated", "sigterm_as_interrupt", "TERMINATED_EXIT_STATUS"]

#: The exit status of a process stopped by SIGTERM (128 + 15), as shells report it.
TERMINATED_EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"terminated by signal {signum} ({signal.Signals(signum).name})")
        self.signum = signum

    def __reduce__(self):  # pickled (multiprocessing, Ray) by its signal, not its message
        return type(self), (self.signum,)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


class sigterm_as_interrupt:  # noqa: N801 - used as a function: `sigterm_as_interrupt()`
    """Install a SIGTERM handler that raises :class:`Terminated`; usable two ways.

    ``sigterm_as_interrupt()`` installs it for the rest of the process (a command's
    ``main``); ``with sigterm_as_interrupt(): ...`` installs it for the block and puts the
    previous handler back afterwards (a library call, a test). ``previous`` is the handler it
    replaced; ``installed`` is False when it could not install one (not the main thread).
    """

    def __init__(self) -> None:
        self.installed = threading.current_thread() is threading.main_thread()
        self.previous: Any = None
        if self.installed:
            self.previous = signal.signal(signal.SIGTERM, _raise_terminated)

    def restore(self) -> None:
        """Put back the handler that was there before."""
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None
                          else signal.SIG_DFL)
            self.installed = False

    def __enter__(self) -> sigterm_as_interrupt:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()
