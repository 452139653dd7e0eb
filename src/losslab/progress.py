"""Progress of long computations: a bar with an ETA on a terminal, one log line per item.

Why this shape: a surface, a curve plane, a ratio map or a Hessian spectrum runs for seconds
to hours, and a person at a terminal wants to see how far it is and when it will end (a tqdm
bar with an ETA), while a log file (``losslab -v 2> log``, a study's worker) wants one line per
finished item, not a bar redrawn with carriage returns. So :func:`track` draws a bar only where
stderr is a terminal (or when asked) and logs one INFO line when the item ends, through the
logger of the module that tracks it::

    with track(len(todo), "surface", initial=finished) as bar:
        for chunk in chunks:
            ...                   # compute the chunk and read it back
            bar.update(len(chunk))
    # logged: "surface: 121 points in 12.3 s"

The bar is advanced where the computation already waits for its numbers (a chunk of grid
points read back to the host, a Hessian-vector product whose dot product the algorithm reads),
never inside a per-batch loop: tracking adds no device synchronisation.

Nesting: a bar opened while another is open (a study's analysis phase around its maps) takes
the next line (tqdm's automatic ``position``) and is cleared when it ends (``leave=None``:
only the outermost bar stays), so the outer bar and its ETA stay readable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType

__all__ = ["Progress", "track", "progress_enabled"]

_FALSE = ("", "0", "false", "no", "off")


def _env_flag(name: str) -> bool | None:
    """The environment variable ``name`` as a flag: None when unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() not in _FALSE


def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether a bar is drawn: ``enabled`` when given, else ``LOSSLAB_PROGRESS`` (``1``/``0``)
    when set, else off when ``TQDM_DISABLE`` is set (to anything but ``0``/``false``), else
    whether stderr is a terminal (a log file or a pipe gets no carriage-return redraws)."""
    if enabled is not None:
        return bool(enabled)
    forced = _env_flag("LOSSLAB_PROGRESS")
    if forced is not None:
        return forced
    if _env_flag("TQDM_DISABLE"):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def _plural(unit: str, n: int) -> str:
    if n == 1:
        return unit
    if unit.endswith("is"):  # analysis -> analyses
        return unit[:-2] + "es"
    return unit if unit.endswith("s") else unit + "s"


class Progress:
    """The finished units of one item (``done``, counting ``initial``), a tqdm bar when one is
    drawn, and the line logged at the end. Made by :func:`track`; a context manager."""

    def __init__(self, total: int | None, desc: str, *, unit: str, initial: int,
                 bar: bool, silent: bool, logger: logging.Logger):
        self.total, self.desc, self.unit = total, desc, unit
        self.initial = self.done = int(initial)
        self.silent, self.logger = silent, logger
        self._draw = bar
        self._bar = None
        self._start = 0.0

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self._draw:
            from tqdm.auto import tqdm  # imported when a bar is drawn

            self._bar = tqdm(total=self.total, initial=self.initial, desc=self.desc,
                             unit=self.unit, leave=None, dynamic_ncols=True)
        return self

    def update(self, n: int = 1) -> None:
        """``n`` more units finished (call it where the results are already on the host)."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        if not self.silent:
            self.logger.info(self.summary(stopped=kind is not None))

    def summary(self, stopped: bool = False) -> str:
        """The finished line, e.g. ``"surface: 121 points in 12.3 s"``."""
        seconds = time.perf_counter() - self._start
        whole = self.total is None or self.done == self.total
        count = (f"{self.done} {_plural(self.unit, self.done)}" if whole
                 else f"{self.done} of {self.total} {_plural(self.unit, self.total)}")
        resumed = f" ({self.initial} done before)" if self.initial else ""
        if stopped:
            return f"{self.desc}: stopped at {count} after {seconds:.1f} s{resumed}"
        return f"{self.desc}: {count} in {seconds:.1f} s{resumed}"


def track(total: int | None, desc: str, *, unit: str = "point", initial: int = 0,
          enabled: bool | None = None, logger: logging.Logger | str | None = None
          ) -> Progress:
    """A context manager counting one item's ``total`` units (``desc`` names the item).

    ``enabled``: ``None`` (auto) draws a bar when :func:`progress_enabled` says so and logs
    the finished line; ``True`` draws a bar and logs; ``False`` is silent, no bar and no line
    (for a computation that is one step of a larger one, which reports itself). ``initial``:
    units already finished (a resumed map), where the bar starts. ``logger`` (a logger or its
    name) defaults to the calling module's. The line is logged also when the item stops on an
    exception ("stopped at ...").
    """
    if logger is None:
        logger = sys._getframe(1).f_globals.get("__name__", __name__)
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    return Progress(total, desc, unit=unit, initial=initial,
                    bar=enabled is not False and progress_enabled(enabled),
                    silent=enabled is False, logger=logger)
