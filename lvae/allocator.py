"""Let glibc keep freed memory in the process, so that large activations reuse pages.

Why: an importance-weighted pass allocates and frees activations of a few MB many times
a second. glibc hands blocks that large to mmap and gives them back on free, so every
pass faults in fresh, zeroed pages; with a 32 MB mmap threshold and a 512 MB trim
threshold they stay in the heap. Measured on this 2-core EPYC, one thread, the `paper`
IW pass (4 images x K = 1000): 235 ms before, 153 ms after (the mmap threshold alone:
216 ms; `make bench` holds the current figure). Training steps did not change.

The price is fragmentation: anything small that stays allocated between passes (a per-image
result kept until the split ends) pins the heap's top, and with a 512 MB trim threshold glibc
hands nothing back, so a long score's heap creeps upward (issue 32: 227 -> 494 MB over 223
images; 24 GB once). Scoring keeps nothing between passes (lvae.evaluation), and a long score
calls `return_freed_memory` (malloc_trim(0)) now and then: a 3.6 GB heap went back to 0.76 GB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed on 64-bit
TRIM_THRESHOLD = 512 * 2**20  # at most this much freed memory is kept


@functools.cache
def _libc_function(name: str):
    """glibc's `name` (mallopt, malloc_trim, mallinfo2), or None where the C library has no such function."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):  # musl and others
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds once per process; False where the C library is not glibc (nothing changes there)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def return_freed_memory() -> bool:
    """Give the heap's free pages back to the system (glibc's malloc_trim(0)); False where there is no such call.

    Costs a walk of the free lists (about a millisecond for a heap of a few hundred MB) and the page
    faults of refilling what is given back, so a caller does it every few seconds, not every pass.
    """
    trim = _libc_function("malloc_trim")
    return bool(trim(0)) if trim is not None else False


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_bytes() -> tuple[int, int] | None:
    """(bytes the heap holds from the system, bytes of it in use), over every malloc arena; None without glibc >= 2.33.
    Memory that large blocks mmap on their own is left out: it goes back to the system when freed."""
    mallinfo2 = _libc_function("mallinfo2")
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.arena, info.uordblks
