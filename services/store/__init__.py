"""Vectors and payloads in Qdrant (a collection per variant: Qdrant Edge embedded, or a server), photos on disk."""

from services.errors import StoreLocked
from services.store.client_engine import ClientEngine, Placement
from services.store.clusters import ClusterIndex
from services.store.edge_engine import EdgeEngine, check_unowned, copy_sparse
from services.store.engine import COLLECTION_PREFIX, EDGE, FACET_FIELDS, PHOTO, Engine, Found, Point
from services.store.filters import SearchFilters
from services.store.media import MediaStore
from services.store.migrate import copy_collections, export_collections, migrate_legacy_store, restore_collections
from services.store.products import delete_product_photos
from services.store.vectors import SERVED_NAME, CollectionState, Hit, VectorStore, collection_name, point_id

__all__ = [
    "COLLECTION_PREFIX",
    "EDGE",
    "FACET_FIELDS",
    "PHOTO",
    "SERVED_NAME",
    "ClientEngine",
    "ClusterIndex",
    "CollectionState",
    "EdgeEngine",
    "Engine",
    "Found",
    "Hit",
    "MediaStore",
    "Placement",
    "Point",
    "SearchFilters",
    "StoreLocked",
    "VectorStore",
    "check_unowned",
    "collection_name",
    "copy_collections",
    "copy_sparse",
    "delete_product_photos",
    "export_collections",
    "migrate_legacy_store",
    "point_id",
    "restore_collections",
]
