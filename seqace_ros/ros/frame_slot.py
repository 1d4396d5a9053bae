"""A queue of one between the executor and the worker thread: the newest frame wins.

Image callbacks only drop their message here (O(1), never blocking); the worker takes the newest
one when it is free. Frames that arrive while it is busy replace the waiting one, so latency never
grows under load (no backlog), and the counters say how many were replaced.
"""

from __future__ import annotations

import threading
from typing import Any


class LatestSlot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.received = 0
        self.replaced = 0  # frames dropped because a newer one arrived before the worker took them

    def put(self, item: Any) -> bool:
        """Store ``item``; returns True when it replaced one that was never processed."""
        with self._cond:
            replaced = self._has_item
            self._item, self._has_item = item, True
            self.received += 1
            self.replaced += int(replaced)
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any | None:
        """The newest item, waiting up to ``timeout`` s; None on timeout or after close()."""
        with self._cond:
            if not self._has_item and not self._closed:
                self._cond.wait(timeout)
            if not self._has_item or self._closed:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def clear(self) -> None:
        with self._cond:
            self._item, self._has_item = None, False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
