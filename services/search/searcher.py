"""Search: a query (photo, drawing, words, liked products, or several together) to ranked products. Every
caller goes through `Searcher.search`: the gateway (and so the page), `stylefinder eval` and the benches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from services.attributes import FIELDS, WEIGHT, Interpreted, garment_kinds, interpret, rerank, shown
from services.embedding import Embedder
from services.errors import (
    FetchError,
    ImageDecodeError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TransientFetchError,
)
from services.images import MAX_ASPECT, Fetcher, decode_image, normalise_sketch, shown_size
from services.models import Registry, Variant
from services.regions import GARMENTS, Person, Region, RegionFinder, clip_box, scaled
from services.search.garments import Garments
from services.search.kind_guess import KindGuess
from services.search.query import Found, SearchRequest
from services.search.remembered import Remembered, photo_key
from services.store import PHOTO, Hit, SearchFilters, VectorStore

log = logging.getLogger("stylefinder.search")

# Words with a photo, a drawing or liked products name what the shopper wants (a kind, a colour): an attribute
# they name outweighs any difference of look (cosine scores of one query lie well within 1).
STEERING_WEIGHT = 1.0


class Searcher:
    def __init__(
        self,
        registry: Registry,
        embedder: Embedder,
        store: VectorStore,
        fetcher: Fetcher | None = None,
        regions: RegionFinder | None = None,
    ) -> None:
        self.registry = registry
        self.embedder = embedder
        self.store = store
        self.fetcher = fetcher
        self.garments = Garments(regions)
        self.kind_guesses: dict[str, KindGuess | None] = {}  # by variant, loaded at the first photo it may steer
        # The vectors of photos searched whole (framed on the person who fills little of one), by variant and photo:
        # a garment picked on one next (as the page's chips do) is guessed from both views of it (docs/benchmarks.md,
        # "Photos of people").
        self.whole_photos: Remembered[tuple[str, bytes], np.ndarray] = Remembered()

    def search(self, query: SearchRequest, variant: str, upload: bytes | None = None) -> Found:
        """Ranked products for the query in the variant's collection; `upload` is the query photo's bytes when
        it came as a file rather than as `image_url` or `image_base64`."""
        found = Found([], variant)
        clock = time.perf_counter()

        def lap(step: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            found.timings[step] = found.timings.get(step, 0.0) + (now - clock) * 1000
            clock = now

        spec = self.registry[variant]
        using = PHOTO
        vectors: list[np.ndarray] = []
        # what the kind guess reads of a photo: the part searched, then the whole where remembered (or embedded for a
        # garment's crop that leaves the guess unsure: `_garment_views`)
        views = np.zeros((0, 0), np.float32)
        # a photo sent (not a drawing) as read whole (framed on its person where they fill little of it), its
        # `photo_key`
        photo: tuple[Image.Image, bytes] | None = None
        if upload is not None or query.has_image:
            data = self._image_bytes(query, upload)
            picture = _decoded(data, query.mode == "sketch")
            lap("decode")
            if query.mode == "sketch":
                using = spec.sketch_vector if spec.sketch_vector == PHOTO else spec.edge_vector
                vectors.append(self.embedder.embed_images(spec.edge_tower, [normalise_sketch(picture)])[0])
                lap("embed")
            else:
                key = photo_key(data)  # names the photo in the garments' memory and the whole photos'
                vector, whole = self._photo_vector(query, variant, picture, data, key, found, lap)
                vectors.append(vector)
                photo = whole, key
                # the kind guess reads a photo of a person, and a garment named on a photo with none found (a
                # close-up of it: the whole photo is that garment)
                if found.regions:
                    views = np.stack([vectors[0], *self._whole_photo(query, variant, key, vectors[0])])
                elif query.garment is not None:
                    views = vectors[0][None]
        guess = self._kind_guess(query, variant, found)
        # the catalogue's values, read once for the words, a garment named and a kind guessed, where any steers
        steers = query.interpret and bool(query.text or query.garment or guess)
        vocabulary = self.store.vocabulary(variant, list(FIELDS)) if steers else {}
        understood: Interpreted = {}
        if query.text:
            if query.interpret:
                understood = interpret(query.text, vocabulary)
                found.interpreted = shown(understood)
            # Alone, the words' embedding is the query; beside a photo or liked products it moves the query
            # where the words name none of the catalogue's values (their attributes steer otherwise).
            if not understood or not (vectors or query.like):
                if using != PHOTO:
                    raise InvalidInput(
                        f"the words {query.text!r} name no colour, kind, gender or brand of this catalogue: a "
                        "drawing can be narrowed by those only"
                    )
                vectors.append(self.embedder.embed_texts(variant, [query.text])[0])
                lap("embed")
        if "category" not in understood:  # words that name a kind win
            # what the garment named may be: the full-length region's kinds only where the guess takes it for one
            # piece (a dress, a suit), not for an outfit of separates; with no guess to tell, neither
            among = None
            if guess is not None and query.garment is not None:
                views, among = self._garment_views(query, variant, guess, views, vocabulary, found, photo, lap)
            worn = self._worn_kinds(query, vocabulary, among)
            if guess is not None:  # a guess is of a photo
                whole = found.region is None or found.region.garment == "person"
                guessed = self._guessed_kinds(query, variant, guess, views, vocabulary, worn, among, whole)
                if guessed and guessed != worn:  # else the garment named said as much
                    worn, found.guessed = guessed, ["category"]
            if worn:
                understood["category"] = worn
                found.interpreted = shown(understood)
        if query.like or query.unlike:  # SearchRequest holds a photo, a drawing, words or liked products
            vectors = [self._liked(variant, query.like, query.unlike, using, vectors)]
        vector = _normalised(np.mean(vectors, axis=0))
        weight = WEIGHT if not (query.has_image or upload is not None or query.like) else STEERING_WEIGHT
        found.hits = self._ranked(query, variant, vector, using, understood, weight)
        lap("store")
        return found

    def _ranked(
        self,
        query: SearchRequest,
        variant: str,
        vector: np.ndarray,
        using: str,
        understood: Interpreted,
        weight: float,
    ) -> list[Hit]:
        """The nearest products; where words were understood, also the nearest with all understood attributes
        and with each one, ranked together with the attributes as soft filters: a product with more of them
        rises, the rest stay. The shopper's own filters always hold; `offset` pages through the ranking."""
        wanted = query.offset + query.top_k

        def nearest(filters: SearchFilters = query.filters) -> list[Hit]:
            return self.store.search(variant, vector, wanted, filters, using, query.retrieval, query.excluded)

        hits = nearest()
        if understood:
            unset = {key: values for key, values in understood.items() if getattr(query.filters, key) is None}
            narrowings = [unset] if unset else []
            if len(unset) > 1:
                narrowings += [{key: values} for key, values in unset.items()]
            for narrowing in narrowings:
                hits += nearest(query.filters.model_copy(update=narrowing))
            unique = list({hit.product_id: hit for hit in hits}.values())
            scores = rerank([(hit.score, hit.payload) for hit in unique], understood, weight)
            for hit, score in zip(unique, scores, strict=True):
                hit.score = score
            hits = sorted(unique, key=lambda hit: -hit.score)
        return hits[query.offset : wanted]

    def _worn_kinds(
        self, query: SearchRequest, vocabulary: Mapping[str, Sequence[str]], among: frozenset[str] | None
    ) -> list[str]:
        """A garment named steers like its kind in words: the catalogue's kinds of that garment (a lower garment
        is no shirt, however like one its crop looks); the full-length region's where the guess allows them
        (`among`). The shopper's own kinds (`filters.category`) stand; `interpret` off, none."""
        if query.garment is None or not query.steers_kinds or (query.garment == "full" and among is None):
            return []
        return garment_kinds(query.garment, vocabulary.get("category", []))

    def _kind_guess(self, query: SearchRequest, variant: str, found: Found) -> KindGuess | None:
        """The variant's kind guess where it may steer: a photo of a person (garments were found on it), searched
        whole or by a garment named, or a photo with none found whose garment is named (a close-up: the whole photo
        is that garment, and the guess picks among its kinds, as on a person's crop); no kinds of the shopper's own
        (`filters.category`), `interpret` and `guess` on."""
        if not (found.regions or query.garment) or query.box is not None or not query.guess or not query.steers_kinds:
            return None
        return self._variant_guess(variant)

    def _variant_guess(self, variant: str) -> KindGuess | None:
        if variant not in self.kind_guesses:
            self.kind_guesses[variant] = _read_guess(self.registry[variant])
        return self.kind_guesses[variant]

    def _guessed_kinds(
        self,
        query: SearchRequest,
        variant: str,
        guess: KindGuess,
        views: np.ndarray,
        vocabulary: Mapping[str, Sequence[str]],
        worn: list[str],
        among: frozenset[str] | None,
        whole: bool,
    ) -> list[str]:
        """The kinds the photo (`views`: the part searched, then the whole photo where remembered) is guessed to
        show: of a garment named, the likeliest of its kinds (`worn`, of the things `among`); of the full-length
        region guessed an outfit of separates or where the catalogue has no kinds of it (no dress, jumpsuit or suit),
        and of a photo with no garment named, the likeliest of the catalogue's. None where the photo is searched
        `whole` and is one of the catalogue's own."""
        if among is not None and (worn or query.garment != "full"):
            likely = guess.kinds(views, worn, among)
        else:
            likely = guess.kinds(views, vocabulary.get("category", []))
        if likely and whole and self._catalogues_own(variant, views[0], guess, query):
            return []
        return likely

    def _garment_views(
        self,
        query: SearchRequest,
        variant: str,
        guess: KindGuess,
        views: np.ndarray,
        vocabulary: Mapping[str, Sequence[str]],
        found: Found,
        photo: tuple[Image.Image, bytes] | None,
        lap: Callable[[str], None],
    ) -> tuple[np.ndarray, frozenset[str] | None]:
        """The views the guess reads of a garment named, and the things the garment may be
        (`KindGuess.garment_things`). Where a person's crop of it is read alone (the whole photo not remembered) and
        leaves the guess unsure among them (`KindGuess.sure`), the whole photo's vector too, embedded now and
        remembered: an embedding more on such a search only (most crops are sure, docs/benchmarks.md), and none
        where the catalogue has no kind of the garment to pick."""
        assert query.garment is not None
        among = guess.garment_things(views, query.garment)
        # embedded only for a person's crop read alone (the whole photo not remembered) that leaves the guess unsure
        if found.region is None or photo is None or len(views) != 1 or guess.sure(views, among):
            return views, among
        # nothing of it here to pick (a full-length region's guess picks among all kinds where none is worn in one)
        if among is not None and query.garment != "full" and not self._worn_kinds(query, vocabulary, among):
            return views, among
        picture, key = photo
        lap("store")  # since the last step: the store's vocabulary read
        whole = self.embedder.embed_images(variant, [picture])[0]
        lap("embed")
        self.whole_photos.put((variant, key), whole)
        views = np.stack([views[0], whole])
        return views, guess.garment_things(views, query.garment)

    def _whole_photo(self, query: SearchRequest, variant: str, key: bytes, vector: np.ndarray) -> list[np.ndarray]:
        """Of a photo of a person: where a part of it is searched, the whole photo's vector if it was searched whole
        before (none otherwise: `_garment_views` embeds it only where the crop leaves the guess unsure); where the
        whole is searched, it is kept."""
        if query.garment is None and query.box is None:
            self.whole_photos.put((variant, key), vector)
            return []
        whole = self.whole_photos.get((variant, key))
        return [whole] if whole is not None else []

    def _catalogues_own(self, variant: str, vector: np.ndarray, guess: KindGuess, query: SearchRequest) -> bool:
        """Whether the photo is (nearly) one of the catalogue's own: a shopper who sends a product's photo wants that
        product first, whatever kind the guess would steer to (its models wear it: garments are found on it too).
        By cosine, whatever `retrieval` the search asked for."""
        nearest = self.store.search(variant, vector, 1, query.filters, PHOTO, "direct", query.excluded)
        return bool(nearest) and nearest[0].score >= guess.instance

    def _photo_vector(
        self,
        query: SearchRequest,
        variant: str,
        picture: Image.Image,
        data: bytes,
        key: bytes,
        found: Found,
        lap: Callable[[str], None],
    ) -> tuple[np.ndarray, Image.Image]:
        """The embedding of the part of a photo searched (`data`: its bytes, `key`: their `photo_key`), its garments
        found meanwhile, and the photo as the kind guess reads it whole: framed on the person where they fill little
        of it (`Person.frame`: a second embedding then, where the whole photo is searched, unless it is the
        catalogue's own). Boxes are given and answered in the photo's pixels as sent, which the decoded picture may
        have reduced."""
        sent = shown_size(data)
        to_sent = sent[0] / picture.width
        pending = self.garments.find(picture, key)

        def person() -> Person:
            seen = pending.result()
            if seen is None:
                if query.garment is not None:
                    raise ServiceUnavailable("garments cannot be found in photos right now: give a box instead")
                seen = Person([])
            elif self.garments.finder is not None:
                found.garments = [r.garment for r in seen.regions] or list(GARMENTS)
            found.regions = [Region(r.garment, scaled(r.box, to_sent), r.score) for r in seen.regions]
            lap("regions")
            return seen

        if query.garment is not None:
            person()
        part = self._part(query, picture, found, sent)
        vector = self.embedder.embed_images(variant, [part])[0]
        lap("embed")
        frame = person().frame
        if frame is None:
            return vector, picture
        framed = picture.crop(frame)
        if query.garment is None and query.box is None:  # searched whole: the person, not the street around them
            if self._catalogues_photo(query, variant, vector):
                return vector, picture
            found.region = Region("person", scaled(frame, to_sent), 1.0)
            vector = self.embedder.embed_images(variant, [framed])[0]
            lap("embed")
        return vector, framed

    def _catalogues_photo(self, query: SearchRequest, variant: str, whole: np.ndarray) -> bool:
        """Whether a photo searched whole, whose person would be framed, is the catalogue's own (`_catalogues_own`,
        at the variant's kind guess's cosine; never where it has none): its product's photo finds that product."""
        guess = self._variant_guess(variant)
        return guess is not None and self._catalogues_own(variant, whole, guess, query)

    def _image_bytes(self, query: SearchRequest, upload: bytes | None) -> bytes:
        """The shopper's photo or drawing as sent: the upload, a URL (http(s) to public hosts only: never a path)
        or base64; a problem with it names the image as the cause."""
        if upload is not None:
            return upload
        if self.fetcher is None:
            raise InvalidInput("this search takes uploaded photos only")
        try:
            if query.image_url:
                return self.fetcher.download(query.image_url)
            return self.fetcher.decode_base64(query.image_base64 or "")
        except (FetchError, TransientFetchError) as error:
            raise type(error)(f"unusable image: {error}") from None

    def _part(self, query: SearchRequest, picture: Image.Image, found: Found, sent: tuple[int, int]) -> Image.Image:
        """The part of a photo to search: the box given, or the garment named, found on the person in it (on a
        photo where no garment is found, the whole photo is that garment). Without either the whole photo is
        searched: on photos of people against a packshot catalogue no garment region found by itself beat the whole
        photo (docs/benchmarks.md, "Photos of people")."""
        to_picture = picture.width / sent[0]
        if query.box is not None:
            found.region = Region("box", clip_box(query.box, *sent, MAX_ASPECT), 1.0)
            return picture.crop(scaled(found.region.box, to_picture))
        if query.garment is None:
            return picture
        if self.garments.finder is None:
            raise InvalidInput(
                "this deployment looks for no garments in photos (STYLEFINDER_REGIONS is off, or the pose models are "
                "not installed: deploy/setup.sh installs them): give a box"
            )
        if not found.regions:  # no person, or too little of one: the photo shows the garment (a packshot, a close-up)
            return picture
        found.region = next((r for r in found.regions if r.garment == query.garment), None)
        if found.region is None:
            seen = ", ".join(region.garment for region in found.regions)
            raise InvalidInput(f"no {query.garment!r} garment found on the person in this photo; found: {seen}")
        return picture.crop(scaled(found.region.box, to_picture))

    def close(self) -> None:
        self.garments.close()

    def _liked(
        self, variant: str, like: Sequence[str], unlike: Sequence[str], using: str, others: list[np.ndarray]
    ) -> np.ndarray:
        """Qdrant's average-vector recommendation from the stored vectors (nothing re-embedded): the liked
        products' mean (with the query's other vectors), moved away from the disliked products' mean."""
        stored = self.store.product_vectors(variant, [*like, *unlike], using)
        missing = [product for product in [*like, *unlike] if product not in stored]
        if missing:
            what = "" if using == PHOTO else f" with a {using!r} vector (stylefinder backfill-edges fills them)"
            raise NotFound(f"no product {', '.join(map(repr, missing[:5]))}{what} in variant {variant!r}")
        positive = [*others, *(vector for product in like for vector in stored[product])]
        liked = _normalised(np.mean(positive, axis=0))
        if not unlike:
            return liked
        disliked = _normalised(np.mean([vector for product in unlike for vector in stored[product]], axis=0))
        return _normalised(liked + (liked - disliked))


def _read_guess(variant: Variant) -> KindGuess | None:
    """The variant's kind guess from its file; none where it names none, or where the file is missing, unreadable,
    another variant's or of another width (said once in the log: searches go on unsteered)."""
    path = variant.kind_guess_path
    if path is None:
        return None
    try:
        guess = KindGuess.load(path)
    except Exception as error:  # whatever a missing, cut or foreign file raises, no search fails for it
        log.error("variant %s: no kind guess from %s (train-kind-guess writes it): %r", variant.name, path, error)
        return None
    if guess.variant != variant.name or guess.weights.shape[0] != variant.embedding_dim:
        log.error(
            "variant %s: the kind guess at %s is for variant %s's vectors; not used", variant.name, path, guess.variant
        )
        return None
    return guess


def _decoded(data: bytes, drawing: bool) -> Image.Image:
    """A drawing keeps its transparency: strokes on a transparent canvas are its opaque pixels."""
    try:
        return decode_image(data, keep_alpha=drawing)
    except ImageDecodeError as error:
        raise ImageDecodeError(f"unusable image: {error}") from None


def _normalised(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)
