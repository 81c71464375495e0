"""The person in a query photo (their garments, and the part of the photo they fill where it is little of it), found
beside the photo's embedding and remembered per photo: a client (a page) that shows a photo's garments searches the
same photo again once the shopper picks one."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from services.regions import Person, RegionFinder
from services.search.remembered import REMEMBERED, Remembered

log = logging.getLogger("stylefinder.search")


class Garments:
    def __init__(self, finder: RegionFinder | None, remembered: int = REMEMBERED) -> None:
        self.finder = finder
        self._known: Remembered[bytes, Person] = Remembered(remembered)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="garments")

    def find(self, picture: Image.Image, key: bytes) -> Future[Person | None]:
        """The person in a photo (`key`: its bytes' `photo_key`, which names it): their garments and frame, in the
        decoded picture's pixels, being found while the caller goes on; no one where no finder is configured; None
        where the finder failed (logged)."""
        known = self._known.get(key)
        if known is not None or self.finder is None:
            done: Future[Person | None] = Future()
            done.set_result(known or Person([]))
            return done
        return self._pool.submit(self._find, picture, key)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.finder, "close", None)
        if close is not None:
            close()

    def _find(self, picture: Image.Image, key: bytes) -> Person | None:
        assert self.finder is not None
        try:
            person = self.finder.find(picture)
        except Exception:  # the pose model failing must not fail the search: the photo is searched whole
            log.exception("finding the garments of a photo failed")
            return None
        self._known.put(key, person)
        return person
