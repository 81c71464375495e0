"""The garments of query photos, found beside the photo's embedding (the pose model and the image tower share the
cores rather than take turns) and remembered per photo: a page searches the same photo again once the shopper
picks one of the garments it was shown."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from services.regions import Region, RegionFinder

REMEMBERED = 256  # photos whose garments are kept


class Garments:
    def __init__(self, finder: RegionFinder | None, remembered: int = REMEMBERED) -> None:
        self.finder = finder
        self.remembered = remembered
        self._known: OrderedDict[bytes, list[Region]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="garments")

    def find(self, picture: Image.Image, data: bytes) -> Future[list[Region]]:
        """The garments of a photo (`data`: its bytes, which name it), being found while the caller goes on;
        none where no finder is configured."""
        key = hashlib.sha256(data).digest()
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
        if known is not None or self.finder is None:
            done: Future[list[Region]] = Future()
            done.set_result(known or [])
            return done
        return self._pool.submit(self._find, picture, key)

    def _find(self, picture: Image.Image, key: bytes) -> list[Region]:
        assert self.finder is not None
        regions = self.finder.find(picture).regions
        with self._lock:
            self._known[key] = regions
            while len(self._known) > self.remembered:
                self._known.popitem(last=False)
        return regions
