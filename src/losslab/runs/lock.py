"""One writer per directory: an advisory lock held while a process writes a run or a study.

A process that trains or resumes a run, or runs or reports a study, holds an exclusive
``fcntl.flock`` on ``DIR/.lock`` for as long as it writes there. A second process asking for
the same directory is refused at once with a one-line :class:`~losslab.errors.BusyError` naming
the holder (pid, host, command, since when), so two writers never interleave epochs in one
``metrics.jsonl`` or train one study's runs twice.

The kernel drops a ``flock`` when its holder dies, even by ``kill -9``, so a lock can never be
left held by a dead process. The holder's record in the file can outlive it; a later process
finds the lock free, says whose stale record it replaces, and takes it over. Within one
process the lock is re-entrant (a study's report taken while the study runs, a run resumed by
the process that holds it). ``flock`` is reliable on local disks; on network file systems
(NFS) it depends on the server, so a cluster study should have one driver per directory.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from losslab.errors import BusyError

__all__ = ["DirectoryLock", "LOCK_NAME"]

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"

# directory (resolved) -> [file descriptor, depth] of the locks this process holds
_held: dict[Path, list[int]] = {}


def _holder_record() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv)),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _read_holder(fd: int) -> dict[str, object]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):  # written by no process of ours
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class DirectoryLock:
    """``with DirectoryLock(run_dir, what="run"): ...`` holds ``run_dir/.lock`` or refuses.

    ``what`` names the directory in the refusal ("run", "study").
    """

    def __init__(self, directory: str | Path, *, what: str = "directory"):
        self.directory = Path(directory)
        self.what = what
        self._key: Path | None = None

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def acquire(self) -> DirectoryLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        key = self.directory.resolve()
        if key in _held:  # this process holds it already
            _held[key][1] += 1
            self._key = key
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise BusyError(self._refusal(holder)) from None
        except BaseException:
            os.close(fd)
            raise
        self._note_stale(_read_holder(fd))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(_holder_record()) + "\n").encode("utf-8"))
        _held[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None or key not in _held:
            return
        entry = _held[key]
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd = entry[0]
        try:  # leave an empty file: a record in it would read as a stale holder
            os.ftruncate(fd, 0)
        except OSError:  # the directory was removed or moved: nothing to tidy
            pass
        os.close(fd)  # closing drops the flock

    def _refusal(self, holder: dict[str, object]) -> str:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
               f"(`{holder.get('command', '?')}`, since {holder.get('since', '?')})"
               if holder else "another process")
        return (f"{self.what} directory {self.directory} is in use by {who}; wait for it to "
                "finish or stop it, then try again")

    def _note_stale(self, holder: dict[str, object]) -> None:
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return
        if holder.get("host") == socket.gethostname() and _alive(pid):
            # alive but not holding the flock: it released without tidying (or its pid was reused)
            return
        log.warning("%s: taking over the stale lock of pid %s on %s (%s), which no longer holds it",
                    self.directory, pid, holder.get("host", "?"), holder.get("command", "?"))

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
