"""The store's one interface on both engines (Qdrant Edge embedded; qdrant-client in-memory, which speaks the
server's API; a real server too when STYLEFINDER_TEST_QDRANT_URL names one): collections per variant,
idempotent ids, filters, facets, product-level operations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.errors import InvalidInput
from services.images import decode_image
from services.settings import Settings
from services.store import (
    ClientEngine,
    EdgeEngine,
    MediaStore,
    Placement,
    Point,
    SearchFilters,
    StoreLocked,
    VectorStore,
    collection_name,
    point_id,
)
from tests.helpers import encode, photo

ENGINES = ["edge", "client-memory"] + (["client-server"] if os.environ.get("STYLEFINDER_TEST_QDRANT_URL") else [])


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def open_engine(kind: str, tmp_path: Path) -> VectorStore:
    if kind == "edge":
        return VectorStore(EdgeEngine(tmp_path / "store"))
    if kind == "client-memory":
        return VectorStore(ClientEngine.in_memory())
    server = ClientEngine.server(os.environ["STYLEFINDER_TEST_QDRANT_URL"])
    for name in server.collections():
        if name.startswith("sf_"):
            server.client.delete_collection(name)
    return VectorStore(server)


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    opened = open_engine(request.param, tmp_path)
    yield opened
    opened.close()


def add(store: VectorStore, product: str, key: str, vector: np.ndarray, **payload: object) -> str:
    pid = point_id(product, key)
    store.upsert("v", [pid], vector[None, :], [{"product_id": product, "image_key": int(key), **payload}])
    return pid


def test_a_servers_collections_are_placed_as_the_settings_say() -> None:
    """Shards, copies and consistency reach Qdrant (the in-memory client takes and ignores them: the calls are
    watched on their way in)."""
    calls: list[tuple[str, dict]] = []

    class Watched(QdrantClient):
        def create_collection(self, *args: object, **kwargs: object) -> bool:
            calls.append(("create", kwargs))
            return super().create_collection(*args, **kwargs)

        def query_points(self, *args: object, **kwargs: object) -> object:
            calls.append(("query", kwargs))
            return super().query_points(*args, **kwargs)

    settings = Settings(_env_file=None, qdrant_shards=6, qdrant_replicas=2, qdrant_write_consistency=2)
    settings.qdrant_read_consistency = "majority"
    store = VectorStore(ClientEngine(Watched(location=":memory:"), placement=Placement.from_settings(settings)))
    add(store, "p", "0", unit(1, 0, 0))
    store.search("v", unit(1, 0, 0), 3)
    created = next(kwargs for kind, kwargs in calls if kind == "create")
    assert (created["shard_number"], created["replication_factor"], created["write_consistency_factor"]) == (6, 2, 2)
    assert next(kwargs for kind, kwargs in calls if kind == "query")["consistency"] == "majority"


def test_collection_per_variant_with_its_dimension(store: VectorStore) -> None:
    store.upsert("a/1", [point_id("p", "0")], np.ones((1, 3), np.float32), [{"product_id": "p"}])
    store.upsert("b", [point_id("p", "0")], np.ones((1, 5), np.float32), [{"product_id": "p"}])
    assert store.engine.vector_sizes(collection_name("a/1")) == {"photo": 3}
    assert store.engine.vector_sizes(collection_name("b")) == {"photo": 5}
    assert set(store.collections()) == {collection_name("a/1"), collection_name("b")}
    [hit] = store.search("a/1", np.full(3, 7.0, np.float32), 1)  # cosine: scale does not matter
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_a_second_named_vector_joins_the_same_points(store: VectorStore) -> None:
    if isinstance(store.engine, ClientEngine):
        pytest.skip("a Qdrant server cannot add a named vector to an existing collection")
    add(store, "p", "0", unit(1, 0, 0))
    add(store, "q", "0", unit(0, 1, 0))
    store.set_vectors("v", {point_id("p", "0"): unit(0, 0, 1, 0)}, "edge")
    assert store.engine.vector_sizes(collection_name("v")) == {"photo": 3, "edge": 4}
    [hit] = store.search("v", unit(0, 0, 1, 0), 5, using="edge")
    assert hit.product_id == "p" and store.count("v") == 2
    assert [h.product_id for h in store.search("v", unit(0, 1, 0), 1)] == ["q"]
    assert [h.product_id for h in store.search("v", unit(1, 0, 0), 1)] == ["p"]  # its photo vector is kept


def test_reindexing_the_same_image_overwrites(store: VectorStore) -> None:
    add(store, "p1", "0", unit(1, 0, 0), title="old")
    add(store, "p1", "0", unit(0, 1, 0), title="new")
    assert store.count("v") == 1
    [hit] = store.search("v", unit(0, 1, 0), 5)
    assert hit.payload["title"] == "new" and hit.score == pytest.approx(1.0)
    assert point_id("p1", "0") == point_id("p1", "0") != point_id("p1", "1")


def test_search_ranks_by_cosine_and_returns_each_product_once(store: VectorStore) -> None:
    add(store, "near", "0", unit(1, 0.1, 0))
    add(store, "near", "1", unit(1, 0.2, 0))
    add(store, "far", "0", unit(0, 0, 1))
    add(store, "mid", "0", unit(1, 1, 0))
    hits = store.search("v", unit(1, 0, 0), 10)
    assert [h.product_id for h in hits] == ["near", "mid", "far"]
    assert hits[0].point_id == point_id("near", "0")


def test_a_product_with_many_photos_does_not_crowd_out_the_others(store: VectorStore) -> None:
    for key in range(12):  # twelve photos of one product, all nearer than anything else
        add(store, "crowd", str(key), unit(1, 0.01 * key, 0))
    add(store, "second", "0", unit(1, 0.5, 0))
    add(store, "third", "0", unit(1, 1, 0))
    add(store, "fourth", "0", unit(0, 0, 1))
    hits = store.search("v", unit(1, 0, 0), 3)
    assert [h.product_id for h in hits] == ["crowd", "second", "third"]
    assert hits[0].point_id == point_id("crowd", "0")


def test_filters_on_standard_and_extra_fields(store: VectorStore) -> None:
    add(store, "a", "0", unit(1, 0, 0), category="Tshirts", gender="Men", price=10.0, in_stock=True, season="Summer")
    add(store, "b", "0", unit(1, 0.1, 0), category="Tshirts", gender="Women", price=30.0, in_stock=False, season="Fall")
    add(store, "c", "0", unit(1, 0.2, 0), category="Caps", gender="Men", price=20.0, in_stock=True, season="Summer")
    store.set_product_payload("c", {"brand": "acme"})

    def ids(**filters: object) -> list[str]:
        return [h.product_id for h in store.search("v", unit(1, 0, 0), 10, SearchFilters(**filters))]

    assert ids(category="Tshirts") == ["a", "b"]
    assert ids(category="Tshirts", gender="Men") == ["a"]
    assert ids(gender=["Women", "Men"], price_min=15) == ["b", "c"]
    assert ids(price_max=20, in_stock=True) == ["a", "c"]
    assert ids(season="Fall") == ["b"]
    assert ids(brand="nobody") == []  # a value no product has (a field none has is refused)
    assert store.engine.fields(collection_name("v"))["season"] == "keyword"  # indexed when first stored


def test_a_filter_on_a_field_no_product_has_is_refused_with_the_filterable_fields(store: VectorStore) -> None:
    add(store, "a", "0", unit(1, 0, 0), category="Tshirts", season="Summer", sleeves=2)
    with pytest.raises(InvalidInput, match="no product has a field 'sesaon'") as refused:
        store.search("v", unit(1, 0, 0), 10, SearchFilters.model_validate({"sesaon": "Summer"}))
    assert "category, colour, gender, brand, price_min, price_max, in_stock, product_id, season, sleeves" in str(
        refused.value
    )
    for hidden in ("image", "image_key", "cluster_photo"):  # where photos came from, and the store's own
        with pytest.raises(InvalidInput, match=f"no product has a field '{hidden}'"):
            store.search("v", unit(1, 0, 0), 10, SearchFilters.model_validate({hidden: 0}))
    with pytest.raises(InvalidInput, match="'sesaon'"):
        store.facets("v", "category", filters=SearchFilters.model_validate({"sesaon": "Summer"}))
    store.set_product_payload("a", {"fabric": "wool"})  # a field a change brings is filterable at once
    assert [h.product_id for h in store.search("v", unit(1, 0, 0), 10, SearchFilters(fabric="wool"))] == ["a"]
    with pytest.raises(InvalidInput, match="no product has a value for price to filter on"):  # not an empty answer
        store.search("v", unit(1, 0, 0), 10, SearchFilters(price_min=5))
    for standard in ({"brand": "acme"}, {"in_stock": True}):  # a standard field too (it was an empty answer)
        with pytest.raises(InvalidInput, match=f"no product has a value for {next(iter(standard))} to filter on"):
            store.search("v", unit(1, 0, 0), 10, SearchFilters.model_validate(standard))
    store.set_product_payload("a", {"price": 9.5, "brand": "acme", "in_stock": True})
    assert [h.product_id for h in store.search("v", unit(1, 0, 0), 10, SearchFilters(price_min=5))] == ["a"]
    taken = SearchFilters(brand="acme", in_stock=True)
    assert [h.product_id for h in store.search("v", unit(1, 0, 0), 10, taken)] == ["a"]


def test_fields_stored_before_they_were_indexed_stay_filterable(store: VectorStore) -> None:
    add(store, "a", "0", unit(1, 0, 0))
    # an older store: the engine holds a field the store never indexed
    store.engine.upsert(
        collection_name("v"),
        [Point(point_id("b", "0"), {"photo": unit(1, 0.1, 0)}, {"product_id": "b", "season": "Fall"})],
    )
    assert [h.product_id for h in store.search("v", unit(1, 0, 0), 10, SearchFilters(season="Fall"))] == ["b"]
    assert store.engine.fields(collection_name("v"))["season"] == "keyword"


def test_facet_counts_come_from_the_engine(store: VectorStore) -> None:
    for index, category in enumerate(["Tshirts", "Tshirts", "Caps", "Tshirts", "Watches"]):
        add(store, f"p{index}", "0", unit(1, index, 0), category=category, gender="Men" if index % 2 else "Women")
    assert store.facets("v", "category") == [("Tshirts", 3), ("Caps", 1), ("Watches", 1)]
    assert store.facets("v", "category", filters=SearchFilters(gender="Women")) == [
        ("Caps", 1),
        ("Tshirts", 1),
        ("Watches", 1),
    ]
    assert store.facets("v", "category", filters=SearchFilters(gender="Men")) == [("Tshirts", 2)]


def test_a_field_is_carried_once_a_product_has_a_value_for_it(store: VectorStore) -> None:
    assert not store.carries("v", "price") and store.facets("v", "category") == []  # nothing indexed yet
    add(store, "plain", "0", unit(1, 0, 0), category="Caps")
    assert not store.carries("v", "price")  # indexed from the start, held by no product
    add(store, "priced", "0", unit(0, 1, 0), price=12.5)
    assert store.carries("v", "price") and store.carries("v", "category") and not store.carries("v", "brand")


def test_boolean_filters_alone_and_in_lists(store: VectorStore) -> None:
    add(store, "new", "0", unit(1, 0, 0), featured=True)
    add(store, "old", "0", unit(1, 0.1, 0), featured=False)
    add(store, "plain", "0", unit(1, 0.2, 0))

    def ids(**filters: object) -> list[str]:
        return [h.product_id for h in store.search("v", unit(1, 0, 0), 10, SearchFilters(**filters))]

    assert ids(featured=True) == ["new"] and ids(featured=False) == ["old"]
    assert ids(featured=[True, False]) == ["new", "old"]


def test_invalid_filters_are_refused() -> None:
    with pytest.raises(ValueError, match="must be a string, integer, boolean"):
        SearchFilters(weight=0.5)  # floats never match exactly: ranges exist for them
    with pytest.raises(ValueError, match="price_min is above price_max"):
        SearchFilters(price_min=5, price_max=1)
    with pytest.raises(ValueError, match="must be a string"):
        SearchFilters(season={"nested": 1})


def test_product_update_and_delete_reach_every_variant(store: VectorStore) -> None:
    for variant in ("v", "w"):
        store.upsert(
            variant,
            [point_id("p", "0"), point_id("p", "1"), point_id("q", "0")],
            np.eye(3, dtype=np.float32),
            [{"product_id": "p", "title": "x"}, {"product_id": "p", "title": "x"}, {"product_id": "q"}],
        )
    assert store.set_product_payload("p", {"title": "renamed", "price": 5.0}) == 4
    assert {r.payload["title"] for records in store.product_points("p").values() for r in records} == {"renamed"}
    removed = store.delete_product("p", keep={point_id("p", "0")})
    assert removed == [point_id("p", "1")] * 2
    assert store.count("v") == store.count("w") == 2
    assert store.delete_product("p") == [point_id("p", "0")] * 2
    assert store.product_points("p") == {} and store.count("v") == 1


def test_a_second_process_cannot_open_the_embedded_store(tmp_path: Path) -> None:
    owner = VectorStore.open(tmp_path / "store")
    try:
        code = (
            "import sys; from pathlib import Path; from services.store import VectorStore, StoreLocked\n"
            "try:\n    VectorStore.open(Path(sys.argv[1]))\nexcept StoreLocked as e:\n    print('LOCKED', e)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True, text=True, timeout=60
        )
        assert "LOCKED" in result.stdout and "QDRANT_URL" in result.stdout
        with pytest.raises(StoreLocked):
            VectorStore.open(tmp_path / "store")
    finally:
        owner.close()
    VectorStore.open(tmp_path / "store").close()  # free again once its owner closed it


def test_which_collections_can_gain_a_named_vector(store: VectorStore) -> None:
    """A new collection takes any vector; an existing one keeps what it has, and gains more only on the embedded
    engine (a Qdrant server cannot add one: the pipeline then indexes photos without it)."""
    assert store.can_hold("v", "edge_x")
    add(store, "p", "0", unit(1, 0, 0))
    assert store.can_hold("v", "photo")
    assert store.can_hold("v", "edge_x") == (not isinstance(store.engine, ClientEngine))


def test_a_photo_browsers_cannot_show_is_served_as_a_jpeg_made_once(tmp_path: Path) -> None:
    """Media keep each photo as received (a reindex reads them); a HEIC is served as a JPEG made at its first request
    and kept beside it, never an older photo's copy once the photo is received again (that copy is removed), and
    gone with the photo."""
    media = MediaStore(tmp_path)
    key = point_id("p", "0")
    media.put(key, encode(photo((200, 20, 20)), "JPEG"))
    assert media.shown(key) == (media.get(key), "image/jpeg")
    red, blue = encode(photo((200, 20, 20)), "HEIF"), encode(photo((20, 20, 200)), "HEIF")
    media.put(key, red)
    assert media.get(key) == red
    received = media.path(key).stat().st_mtime_ns
    media.put(key, red)  # the next variant indexing it: the same bytes are not written again
    assert media.path(key).stat().st_mtime_ns == received
    served, kind = media.shown(key) or (b"", "")
    assert kind == "image/jpeg" and decode_image(served).getpixel((48, 64))[0] > 150
    [copy] = media.path(key).parent.glob("*.jpg")
    made = copy.stat().st_mtime_ns
    assert media.shown(key) == (served, "image/jpeg") and copy.stat().st_mtime_ns == made  # not made again
    media.put(key, blue)
    served, _ = media.shown(key) or (b"", "")
    assert decode_image(served).getpixel((48, 64))[2] > 150  # the photo received since, not the red one's copy
    assert len(list(media.path(key).parent.glob("*.jpg"))) == 1
    media.path(key).with_name(f"{media.path(key).name}.0123.part").write_bytes(b"cut")  # a write a crash cut short
    kept = tmp_path.parent / f"{tmp_path.name}-backup"
    shutil.copytree(tmp_path, kept, ignore=shutil.ignore_patterns(*MediaStore.DERIVED))
    assert [path.name for path in kept.rglob("*") if path.is_file()] == [media.path(key).name]  # the photo alone
    media.delete(key)
    assert media.shown(key) is None and not list(media.path(key).parent.iterdir())


def test_a_photos_first_requests_at_once_all_get_its_jpeg(tmp_path: Path) -> None:
    """Gateway threads asking for a HEIC's shown copy at once, while none is kept yet: each gets the whole JPEG
    (writers of one file never share a partial file, readers never see one)."""
    media = MediaStore(tmp_path)
    key = point_id("p", "0")
    media.put(key, encode(photo((200, 20, 20), size=(300, 400)), "HEIF"))
    for _ in range(10):
        for made in media.path(key).parent.glob("*.jpg"):
            made.unlink()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: media.shown(key), range(8)))
        assert len({answer for answer in answers}) == 1 and answers[0] is not None
        assert decode_image(answers[0][0]).size == (300, 400)
