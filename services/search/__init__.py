"""Search, the room every caller shares: a query (photo, drawing, words, liked products, a garment of a photo of
a person) to ranked products with what was understood."""

from services.search.garments import Garments
from services.search.kind_guess import KindGuess
from services.search.query import MAX_LIKED, MAX_OFFSET, MAX_TOP_K, Found, SearchRequest
from services.search.searcher import STEERING_WEIGHT, Searcher

__all__ = [
    "MAX_LIKED",
    "MAX_OFFSET",
    "MAX_TOP_K",
    "STEERING_WEIGHT",
    "Found",
    "Garments",
    "KindGuess",
    "SearchRequest",
    "Searcher",
]
