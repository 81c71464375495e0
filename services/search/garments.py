"""The garments of query photos, remembered per photo: a client (a page) that shows a photo's garments searches the
same photo again once the shopper picks one."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

from PIL import Image

from services.regions import Region, RegionFinder

REMEMBERED = 256  # photos whose garments are kept
log = logging.getLogger("stylefinder.search")


class Garments:
    def __init__(self, finder: RegionFinder | None, remembered: int = REMEMBERED) -> None:
        self.finder = finder
        self.remembered = remembered
        self._known: OrderedDict[bytes, list[Region]] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, picture: Image.Image, data: bytes) -> list[Region] | None:
        """The garments of a photo (`data`: its bytes, which name it), in the decoded picture's pixels; none where
        no finder is configured; None where the finder failed (logged). They are found before the photo is
        embedded, not beside it: both runtimes use every core, and on two cores running them side by side saved
        nothing (docs/benchmarks.md, "Every kind of query")."""
        key = hashlib.sha256(data).digest()
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
                return known
        if self.finder is None:
            return []
        try:
            regions = self.finder.find(picture).regions
        except Exception:  # the pose model failing must not fail the search: the photo is searched whole
            log.exception("finding the garments of a photo failed")
            return None
        with self._lock:
            self._known[key] = regions
            while len(self._known) > self.remembered:
                self._known.popitem(last=False)
        return regions

    def close(self) -> None:
        close = getattr(self.finder, "close", None)
        if close is not None:
            close()
