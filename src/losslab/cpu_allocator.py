"""Keep freed memory in the process on a CPU, so large activations stop page-faulting.

glibc's ``malloc`` serves a request above its mmap threshold (128 KiB at start, raised
dynamically up to 32 MiB) with a fresh ``mmap`` and returns it to the system on ``free``; it
also trims the top of the heap back to the system once more than twice that threshold lies
free there. A forward pass of a convolutional network allocates and frees activations of
several MiB per layer, so on a CPU each of them is faulted in page by page, every batch,
every point: ``benchmarks/bench_landscape.py`` measured a ResNet-20 evaluation at 0.30-0.41 s
with 50-100k page faults against 0.24 s and none after :func:`keep_freed_memory` (2-core CPU;
which of the two one gets without it depends on the process's allocation history).

:func:`keep_freed_memory` sets the two thresholds once per process with ``mallopt`` so that
blocks up to ``mmap_threshold`` come from the heap and up to ``trim_threshold`` of free heap is
kept for reuse (what PyTorch's CPU performance guide achieves by preloading jemalloc or
tcmalloc). The cost is resident memory: up to ``trim_threshold`` that the process has freed
stays mapped. It does nothing off glibc, and nothing when ``LOSSLAB_KEEP_FREED_MEMORY=0``.
Landscape evaluation and the :class:`~losslab.train.trainer.Trainer` call it on a CPU
(training a ResNet-20 on 1024 CIFAR-shaped images: 2.25-2.3 s per epoch with 150-300k page
faults, 1.93-2.0 s and none with it). In your own CPU loop, call it once at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Set glibc's mmap and trim thresholds once for this process; True if they are set.

    Later calls return the first call's outcome without changing anything.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("LOSSLAB_KEEP_FREED_MEMORY", "1") == "0":
        log.debug("allocator left alone: LOSSLAB_KEEP_FREED_MEMORY=0")
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = (mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
          and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1)
    log.debug("glibc mmap threshold %d, trim threshold %d: %s", mmap_threshold,
              trim_threshold, "set" if ok else "refused")
    _applied = ok
    return ok
