"""What a search worked out about a photo, kept for its next search: a client (a page) that shows a photo's garments
searches the same photo again once the shopper picks one."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

REMEMBERED = 256  # photos kept

Key = TypeVar("Key")
Value = TypeVar("Value")


def photo_key(data: bytes) -> bytes:
    """A photo's name in memory: the digest of its bytes as sent."""
    return hashlib.sha256(data).digest()


class Remembered(Generic[Key, Value]):
    """The values of the last `size` keys put or read, safe to share between searches running at once."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._values: OrderedDict[Key, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> Value | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: Key, value: Value) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
