"""
Garbage collection held off while a big message is decoded: the pause and
the size from which it pays.  Knows nothing of protocols or connections.
"""

from __future__ import annotations

import gc
import threading
from typing import Final

__all__ = ["BIG_MESSAGE", "noCollections"]

#: Messages from this size up are decoded with collection held off: below
#: it, a message's objects are too few for a collection to matter.
BIG_MESSAGE: Final = 64 * 1024


class _NoCollections:
    """
    Garbage collection paused while a message is parsed and built, in any
    thread: every object made then lives on, and the collections a big
    message's objects would set off, each going over all of them, take
    longer than making them (1.0 s against 0.4 s for 1 MiB of empty
    structs).  Collection resumes, if it was on, when the last one ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if not self._inside:
                self._resume = gc.isenabled()
                gc.disable()
            self._inside += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._inside -= 1
            if not self._inside and self._resume:
                gc.enable()


#: Use as C{with noCollections:}.
noCollections: Final = _NoCollections()
