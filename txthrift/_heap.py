"""
How much freed memory the C allocator keeps for reuse: a server process's
choice, made once, that big messages depend on.  Knows nothing of Thrift.

glibc's malloc serves blocks from 128 KiB up with C{mmap} and hands them
back on C{free}, and it hands back the free top of its heap past a
threshold.  A server of 1 MiB messages then maps, faults in (about 256
page faults per MiB) and unmaps fresh pages for every message it reads,
decodes, encodes and writes: half its time at that size.  glibc raises the
thresholds by itself once big blocks have been freed, but not past what a
few connections with messages in flight hold at once, so such a server
never settles; raising them here lets it reuse its heap.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Final

__all__ = ["DEFAULT_KEEP", "keepFreedMemory"]

#: Bytes of freed memory kept by default (C{twistd thrift --keep-freed-mib}).
DEFAULT_KEEP: Final = 64 * 1024 * 1024

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
#: glibc refuses an mmap threshold past 32 MiB on 64-bit machines (4 MiB
#: times the size of a long); smaller machines get half of what they ask
#: until it is accepted.
_MMAP_MOST: Final = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)


def keepFreedMemory(keep: int = DEFAULT_KEEP) -> bool:
    """
    Have glibc's malloc serve blocks up to half of C{keep} bytes from its
    heap, and keep up to C{keep} bytes of it free for reuse instead of
    handing them back to the kernel at once.  It affects the whole process.

    @return: whether it took effect: C{False} where the C library is not
        glibc (its defaults stay), or it refused.
    """
    if keep <= 0:
        raise ValueError(f"keep must be positive, not {keep}")
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    threshold = min(keep // 2, _MMAP_MOST, 2**31 - 1)
    while threshold and not mallopt(_M_MMAP_THRESHOLD, threshold):
        threshold //= 2
    # Setting either turns off glibc's own raising of both.
    return bool(threshold) and bool(mallopt(_M_TRIM_THRESHOLD, min(keep, 2**31 - 1)))
