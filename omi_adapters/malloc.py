"""glibc's allocator, set for requests that carry megabytes.

By default glibc gives each allocation of 128 KiB or more (a threshold it raises to the size of
the largest such block freed so far, up to 32 MiB) its own ``mmap``, and returns it to the
kernel on ``free``; memory freed at the top of the heap goes back as soon as more than twice
that threshold is free. A server that receives, decodes, computes and encodes a tensor of a few
MiB per request allocates several blocks of that size each time, and each fresh block costs
a page fault per 4 KiB page on first touch: on a 4 MiB gRPC request and reply, those faults took
more time than the transport itself (``make bench``: the gRPC 4 MiB figure doubled with this
module's settings).

:func:`tune` keeps blocks below :data:`MMAP_THRESHOLD` in the heap and lets up to
:data:`TRIM_THRESHOLD` of freed heap stay mapped, so a request's buffers reuse the previous
request's pages. What stays mapped is memory that requests in flight used moments before (the
in-flight bounds of ``omi serve`` cap it), not memory the server would not otherwise need.

Nothing is changed on another C library, or when the environment already sets glibc's own
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (the operator's choice wins; see
``mallopt(3)``).
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune"]

log = logging.getLogger("omi_adapters.malloc")

#: Blocks smaller than this come from the heap (glibc's own ceiling for its dynamic threshold).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Freed memory at the top of the heap is returned to the kernel only past this much.
TRIM_THRESHOLD = 64 * 1024 * 1024
#: mallopt(3)'s parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The variables through which an operator sets these thresholds instead.
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune() -> bool:
    """Set glibc's thresholds for this process (see the module documentation); whether they were set."""
    if sys.platform != "linux" or not _glibc():
        return False
    if any(os.environ.get(name) for name in ENVIRONMENT):
        log.debug("glibc malloc thresholds left as the environment sets them")
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting either turns glibc's dynamic thresholds off.
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if not done:  # pragma: no cover - the values are within glibc's bounds
        log.warning("could not set glibc's malloc thresholds")
    return done


def _glibc() -> bool:
    # confstr, not platform.libc_ver(), which reads the interpreter's binary through (ms at start).
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # another C library: no such name
        return False
