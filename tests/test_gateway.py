"""The public API over a real in-process stack (tiny open_clip model, embedded Qdrant, in-process worker)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.apps.gateway.app import create_app
from services.apps.http_errors import bounded
from services.catalogue import CatalogueItem
from services.errors import from_response
from services.models import Variant, save_variant
from services.settings import Settings
from tests.helpers import AUTH, encode, photo, wait_for_job


def upload(indexed_client: TestClient, path: Path, **fields: object) -> dict:
    form = {key: json.dumps(value) if isinstance(value, dict) else str(value) for key, value in fields.items()}
    response = indexed_client.post(
        "/v1/search", files={"image": (path.name, path.read_bytes(), "image/jpeg")}, data=form
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_uploaded_catalogue_photo_finds_its_product_first(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    body = upload(indexed_client, indexed_catalogue / "img" / "blue-circle.jpg", top_k=5)
    assert body["variant"] == "tiny" and body["took_ms"] > 0
    assert len(body["results"]) == 5
    first = body["results"][0]
    assert first["product_id"] == "blue-circle" and first["score"] == pytest.approx(1.0, abs=1e-4)
    assert first["payload"]["title"] == "blue circle" and first["payload"]["price"] == 12.0
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    image = indexed_client.get(first["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == (indexed_catalogue / "img" / "blue-circle.jpg").read_bytes()


def test_search_says_where_its_time_went(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    photo_bytes = (indexed_catalogue / "img" / "blue-circle.jpg").read_bytes()
    response = indexed_client.post("/v1/search", files={"image": ("q.jpg", photo_bytes, "image/jpeg")})
    steps = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert set(steps) == {"read", "decode", "regions", "embed", "store"} and all(
        float(ms) >= 0 for ms in steps.values()
    )
    text = indexed_client.post("/v1/search", json={"text": "blue cap"}).headers["server-timing"]
    assert "embed;dur=" in text and "decode" not in text


def test_facets_count_filter_values_from_the_store(indexed_client: TestClient) -> None:
    body = indexed_client.get("/v1/facets", params={"field": "category"}).json()
    assert body["field"] == "category" and body["variant"] == "tiny"
    assert sorted((v["value"], v["count"]) for v in body["values"]) == [("Caps", 6), ("Tshirts", 6)]
    assert {v["value"] for v in indexed_client.get("/v1/facets", params={"field": "in_stock"}).json()["values"]} == {
        True,
        False,
    }
    refused = indexed_client.get("/v1/facets", params={"field": "price"})
    assert refused.status_code == 422 and "category" in refused.json()["detail"]


def test_the_filter_choices_are_the_fields_products_carry(indexed_client: TestClient, settings: Settings) -> None:
    body = indexed_client.get("/v1/filters").json()
    facets = {facet["field"]: {v["value"]: v["count"] for v in facet["values"]} for facet in body["facets"]}
    assert body["variant"] == "tiny" and body["price"] is True
    assert facets["category"] == {"Caps": 6, "Tshirts": 6} and facets["in_stock"] == {True: 6, False: 6}
    assert set(facets) == {"category", "colour", "gender", "brand", "in_stock"} and len(facets["colour"]) == 6
    with TestClient(create_app(settings), headers=AUTH) as bare:  # products without prices or brands
        item = {
            "id": "plain",
            "images": [f"data:image/png;base64,{base64.b64encode(encode(photo((9, 9, 9)), 'PNG')).decode()}"],
        }
        bare.app.state.runtime.pipeline.run([CatalogueItem(**item, category="Caps")], ["tiny"])
        plain = bare.get("/v1/filters").json()
    assert plain["price"] is False and [facet["field"] for facet in plain["facets"]] == ["category"]


def test_filters_restrict_results(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    body = upload(
        indexed_client,
        indexed_catalogue / "img" / "red-square.jpg",
        top_k=20,
        filters={"category": "Caps", "gender": "Men", "price_max": 14},
    )
    assert body["results"], "some caps for men under 14 exist"
    for result in body["results"]:
        payload = result["payload"]
        assert (payload["category"], payload["gender"]) == ("Caps", "Men") and payload["price"] <= 14
    extra = upload(indexed_client, indexed_catalogue / "img" / "red-square.jpg", top_k=20, filters={"in_stock": True})
    assert {r["payload"]["category"] for r in extra["results"]} == {"Tshirts"}
    own = upload(indexed_client, indexed_catalogue / "img" / "red-square.jpg", top_k=20, filters={"season": "Summer"})
    assert len(own["results"]) == 12  # the catalogue's own column


def test_a_filter_on_a_field_no_product_has_says_which_fields_exist(indexed_client: TestClient) -> None:
    for body in ({"text": "red cap", "filters": {"sleeve": "long"}}, {"text": "red cap", "filters": {"image": "x"}}):
        refused = indexed_client.post("/v1/search", json=body)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert "no product has a field" in detail and "category" in detail and "season" in detail


def test_json_body_with_base64_image_and_text_query(indexed_client: TestClient, indexed_catalogue: Path) -> None:
    data = base64.b64encode((indexed_catalogue / "img" / "green-square.jpg").read_bytes()).decode()
    body = indexed_client.post("/v1/search", json={"image_base64": data, "top_k": 3}).json()
    assert body["results"][0]["product_id"] == "green-square"
    text = indexed_client.post(
        "/v1/search", json={"text": "green t-shirt", "top_k": 4, "filters": {"category": "Caps"}}
    )
    assert text.status_code == 200
    assert len(text.json()["results"]) == 4 and {r["payload"]["category"] for r in text.json()["results"]} == {"Caps"}


JSON = {"content-type": "application/json"}
DEEP: list = []
for _ in range(40):  # lists in lists, 40 levels
    DEEP = [DEEP]
TYPED = {"__type__": "nope", "__value__": 1}  # how kombu's JSON marks a typed value


def test_starlettes_own_refusals_come_in_the_apis_shape(indexed_client: TestClient) -> None:
    """A malformed multipart body, a form field over 1 MB, no such route: a bare {"detail"} without the kind."""
    unbounded = indexed_client.post("/v1/search", content=b"x", headers={"content-type": "multipart/form-data"})
    assert unbounded.status_code == 400 and unbounded.json() == {
        "detail": "Missing boundary in multipart.",
        "error": "invalid",
    }
    inline = indexed_client.post("/v1/search", data={"image_base64": "A" * (1024 * 1024 + 1)}, files={"x": ("x", b"")})
    assert inline.status_code == 400 and "send a photo as a file part" in inline.json()["detail"], inline.text
    assert indexed_client.get("/v1/nowhere").json() == {"detail": "Not Found", "error": "not_found"}


def test_a_symbol_alone_is_words(indexed_client: TestClient) -> None:
    """What the refusal of control and zero-width characters keeps: an emoji, a size, a price."""
    for text in ("\U0001f457", "42", "$"):
        assert indexed_client.post("/v1/search", json={"text": text}).status_code == 200, text


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"json": {"top_k": 3}}, 422, "give a photo or a drawing"),
        ({"json": {"text": "x", "top_k": 0}}, 422, "greater than or equal to 1"),
        ({"json": {"text": "x", "top_k": 101}}, 422, "less than or equal to 100"),
        ({"json": {"text": "x", "variant": "nope"}}, 404, "unknown variant"),
        ({"json": {"text": "x", "variant": "tiny-b"}}, 404, "not served and holds no products: reindex"),
        ({"json": {"text": "x", "variant": "ViT-B-16/openai"}}, 422, "are not on this machine"),
        ({"json": {"image_base64": "bm90IGFuIGltYWdl"}}, 422, "unusable image"),
        ({"json": {"image_url": "http://127.0.0.1:9/x.jpg"}}, 422, "unusable image"),
        ({"json": {"text": "x", "filters": {"price_min": 9, "price_max": 1}}}, 422, "price_min is above"),
        ({"json": ["not", "an", "object"]}, 422, "must be an object"),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 422, "body is not valid JSON"),
        ({"content": b"{broken", "headers": {"content-type": "text/plain"}}, 422, "multipart/form-data with an"),
        ({"files": {"image": ("a.txt", b"hello", "text/plain")}}, 422, "not an image"),
        (
            {"files": {"image": ("a.jpg", encode(photo((1, 1, 1))), "image/jpeg")}, "data": {"filters": "{bad"}},
            422,
            "filters must be a JSON object",
        ),
        (
            {"files": {"image": ("a.jpg", encode(photo((1, 1, 1))), "image/jpeg")}, "data": {"image_url": "http://a"}},
            422,
            "give one image",
        ),
        ({"json": {}}, 422, "give a photo or a drawing"),
        ({"json": {"filters": {"colour": "Blue"}}}, 422, "give a photo or a drawing"),
        ({"json": {"text": "x", "garment": "upper"}}, 422, "send the photo too"),
        ({"json": {"text": "x", "garment": "hat"}}, 422, "'upper', 'lower', 'full' or 'feet'"),
        ({"json": {"image_url": "https://example.com/a.jpg", "box": [10, 10, 5, 20]}}, 422, "x0 < x1"),
        ({"json": {"image_url": "https://example.com/a.jpg", "box": [1, 2]}}, 422, "box"),
        ({"json": {"like": ["no-such-product"]}}, 404, "no product 'no-such-product'"),
        ({"json": {"like": ["a"], "unlike": ["a"]}}, 422, "both liked and unliked: a"),
        ({"json": {"like": [""]}}, 422, "non-empty strings"),
        ({"json": {"like": [str(n) for n in range(21)]}}, 422, "at most 20 different products, not 21"),
        ({"json": {"text": "x", "offset": 5000}}, 422, "less than or equal to 1000"),
        ({"content": b"[" * 10000 + b"]" * 10000, "headers": {"content-type": "application/json"}}, 422, "deeply"),
        ({"json": {"text": "x", "filters": {"": "a"}}}, 422, "is not a field name"),
        ({"json": {"text": "x", "filters": {"a.b[]": "a"}}}, 422, "is not a field name"),
        ({"json": {"text": "x", "filters": {"my field": "a"}}}, 422, "is not a field name"),
        ({"json": {"text": "x", "filters": {"sku": 10**20}}}, 422, "fit in 64 bits"),
        ({"content": b'{"text": "x", "filters": {"price_max": Infinity}}', "headers": JSON}, 422, "finite number"),
        ({"json": {"text": "x", "filters": {"articleType": {"$ne": 1}}}}, 422, "must be a string, integer"),
        ({"json": {"text": "x", "filters": {"colour": []}}}, 422, "non-empty list"),
        ({"json": {"text": "x", "filters": {"price_max": -1}}}, 422, "greater than or equal to 0"),
        ({"json": {"text": "x", "filters": {"in_stock": "perhaps"}}}, 422, "valid boolean"),
        ({"json": {"text": "   "}}, 422, "must contain words"),
        ({"json": {"text": "\u0000\u0001\u0002"}}, 422, "must contain words"),  # were ranked as words
        ({"json": {"text": "\u200b\u200d\u2060\u202e"}}, 422, "must contain words"),
        ({"json": {"text": "x" * 501}}, 422, "at most 500 characters"),
        ({"json": {"text": "x", "unknown": 1}}, 422, "Extra inputs are not permitted"),
        ({"json": {"text": "x", "retrieval": "fast"}}, 422, "'direct' or 'cluster'"),
        ({"json": {"text": "x", "mode": "sketch"}}, 422, "needs a drawing"),
        ({"json": {"image_url": "file:///etc/passwd"}}, 422, "only http and https"),
        ({"json": {"image_url": "gopher://127.0.0.1:6379/_INFO"}}, 422, "only http and https"),
        ({"json": {"image_url": "http://169.254.169.254/latest/meta-data/"}}, 422, "not on the public internet"),
        ({"json": {"image_url": "http://10.0.0.7/p.jpg"}}, 422, "not on the public internet"),
        ({"json": {"image_url": "http://[::ffff:10.0.0.7]/p.jpg"}}, 422, "not on the public internet"),
        ({"json": {"image_url": "http:///nohost.jpg"}}, 422, "unusable image"),
        ({"json": {"image_url": "not a url"}}, 422, "only http and https"),
        ({"json": {"image_base64": "/etc/passwd"}}, 422, "invalid base64"),
        ({"json": {"image_base64": "https://example.com/a.jpg"}}, 422, "invalid base64"),
        ({"json": {"image_base64": "data:image/png,rawbytes"}}, 422, "must be base64"),
        # more digits than Python reads as an integer, a lone UTF-16 surrogate (no character): in JSON, in a form
        ({"content": b'{"text": "x", "top_k": ' + b"1" * 5000 + b"}", "headers": JSON}, 422, "digits"),
        ({"data": {"text": "x", "filters": '{"sku": ' + "1" * 5000 + "}"}}, 422, "digits"),
        ({"data": {"like": "[" + "1" * 5000 + "]"}}, 422, "digits"),
        ({"content": b'{"like": ["\\ud800"]}', "headers": JSON}, 422, "lone UTF-16 surrogate"),
        ({"content": b'{"text": "x", "filters": {"category": "\\udfff"}}', "headers": JSON}, 422, "surrogate"),
        ({"content": b'{"image_url": "http://\\ud800.com/x.jpg"}', "headers": JSON}, 422, "surrogate"),
        ({"data": {"like": '["\\ud800"]'}}, 422, "surrogate"),
        ({"files": {"image": ("a.png", b"", "image/png")}}, 422, "empty file"),
        ({"files": {"image": ("s.png", encode(Image.new("L", (40000, 1)), "PNG"), "image/png")}}, 422, "too extreme"),
        ({"files": {"image": ("t.jpg", encode(photo((1, 1, 1)))[:300], "image/jpeg")}}, 422, "truncated"),
        ({"files": {"sketch": ("s.png", encode(Image.new("L", (64, 64), 255)), "image/png")}}, 422, "blank"),
        (
            {"files": {"sketch": ("s.png", encode(photo((1, 1, 1))), "image/png")}, "data": {"mode": "photo"}},
            422,
            "searched as a drawing",
        ),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(
    indexed_client: TestClient, request_kwargs: dict, status: int, message: str
) -> None:
    response = indexed_client.post("/v1/search", **request_kwargs)
    assert response.status_code == status
    assert message in json.dumps(response.json()["detail"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/v1/products", {"items": [{"id": "a/b", "images": ["x.jpg"]}]}, 422, "may not contain '/'"),
        ("post", "/v1/products", {"items": [{"id": "a\nb", "images": ["x.jpg"]}]}, 422, "control characters"),
        ("post", "/v1/products", {"items": [{"id": "", "images": ["x.jpg"]}]}, 422, "Field required"),
        ("post", "/v1/products", {"items": [{"id": "..", "images": ["x.jpg"]}]}, 422, "may not be '.' or '..'"),
        ("post", "/v1/products", {"items": [{"id": True, "images": ["x.jpg"]}]}, 422, "valid string"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"]}], "variants": []}, 422, "at least 1"),
        ("patch", "/v1/products/a", {"title": None, "colour": ""}, 422, "nothing to change"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": []}]}, 422, "at least 1 item"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x.jpg"] * 33}]}, 422, "at most 32 items"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x.jpg"], "price": -1}]}, 422, "greater than"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "product_id": "9"}]}, 422, "set by"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "image_sha256": "0"}]}, 422, "set by"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "cluster_photo": 3}]}, 422, "set by"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "a.b": 1}]}, 422, "is not usable"),
        ("post", "/v1/products", b'{"items": [{"id": "a", "images": ["x"], "price": Infinity}]}', 422, "finite"),
        ("post", "/v1/products", b'{"items": [{"id": "a", "images": ["x"], "w": NaN}]}', 422, "finite"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "n": 2**64}]}, 422, "64 bits"),
        ("patch", "/v1/products/a", b'{"price": Infinity}', 422, "finite"),
        ("patch", "/v1/products/a", b'{"title": "\\ud800"}', 422, "lone UTF-16 surrogate"),
        ("post", "/v1/products", b'{"items": [{"id": "a", "images": ["media:\\ud800"]}]}', 422, "surrogate"),
        # what the store could not read back, or the queue's messages would read as a typed value (the batch lost)
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "k": DEEP}]}, 422, "nested more than"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "k": {"v": [DEEP]}}]}, 422, "nested"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"], "k": TYPED}]}, 422, "typed value"),
        ("patch", "/v1/products/a", {"k": [TYPED]}, 422, "typed value"),
        ("post", "/v1/snapshots", {"to": "/dev/null/snapshot"}, 422, "cannot write a snapshot into"),
        ("post", "/v1/snapshots", {"to": "/tmp/a\u0000b"}, 422, "cannot write a snapshot into"),
        ("post", "/v1/products", {"items": []}, 422, "items"),
        ("post", "/v1/products", {"items": [{"id": "a", "images": ["x"]}], "variants": ["nope"]}, 404, "unknown"),
        ("patch", "/v1/products/a", {"images": ["x.jpg"]}, 422, "images"),
        ("patch", "/v1/products/nope", {"price": 1}, 404, "nope"),
        ("post", "/v1/reindex", {"from": "tiny", "to": "tiny"}, 422, "the same variant"),
        ("post", "/v1/reindex", {"from": "nope", "to": "tiny"}, 404, "unknown variant"),
        ("get", "/v1/jobs/no-such-job", None, 404, "no-such-job"),
        ("delete", "/v1/products/no-such-product", None, 404, "no-such-product"),
    ],
)
def test_bad_catalogue_requests_get_a_4xx_with_a_message(
    indexed_client: TestClient, method: str, path: str, body: dict | bytes | None, status: int, message: str
) -> None:
    if isinstance(body, bytes):  # JSON that json.dumps will not write (NaN, Infinity)
        response = indexed_client.request(method.upper(), path, content=body, headers=JSON)
    else:
        response = indexed_client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json()["detail"])
    said = str(from_response(status, response.json(), "the gateway"))  # what the CLI prints of it
    assert message in said and "{'" not in said and "[" not in said.split(":")[0]


def test_a_variant_trained_while_the_gateway_runs_is_listed_and_searched(settings: Settings) -> None:
    with TestClient(create_app(settings), headers=AUTH) as client:
        assert "tiny-late" not in {model["name"] for model in client.get("/v1/models").json()}
        assert client.post("/v1/search", json={"text": "red", "variant": "tiny-late"}).status_code == 404
        broken = settings.variants_path / "half-written" / "variant.json"
        broken.parent.mkdir(parents=True)
        broken.write_text('{"name": "half')
        assert client.get("/v1/models").status_code == 200  # a file that cannot be read yet is left out
        broken.unlink()
        folder = settings.registry_file.parent
        late = Variant(name="tiny-late", architecture=str(folder / "tiny.json"), weights=str(folder / "tiny.pt"))
        save_variant(late, settings.variants_path / "tiny-late")
        models = {model["name"]: model for model in client.get("/v1/models").json()}
        assert models["tiny-late"]["available"] and not models["tiny-late"]["served"]
        empty = client.post("/v1/search", json={"text": "red", "variant": "tiny-late"})
        assert empty.status_code == 404 and "holds no products: reindex" in empty.json()["detail"]
        product = {"id": "red", "images": [base64.b64encode(encode(photo((200, 0, 0)))).decode()]}
        job = client.post("/v1/products", json={"items": [product], "variants": ["tiny-late"]}).json()["job_id"]
        assert wait_for_job(client, job)["indexed"] == 1
        answer = client.post("/v1/search", json={"text": "red", "variant": "tiny-late"})
        assert answer.status_code == 200 and answer.json()["variant"] == "tiny-late"
        assert [hit["product_id"] for hit in answer.json()["results"]] == ["red"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("new.csv", b"id,image\nsku-1,photos/sku-1.jpg\n", "relative path"),
        ("new.csv", b"id,image\nsku-1,https://cdn.example/1.jpg\nsku-1,https://cdn.example/2.jpg\n", "repeat"),
        ("new.csv", b"id,image\n", "holds no products"),
        ("new.csv", b"\xff\xfe,id", "not UTF-8"),
        ("new.csv", b"id,image\nsku-1,https://cdn.example/1.jpg,surplus\n", "more values than the header"),
        ("new.csv", b'id,image\n"sku-1' + b"x" * 200_000 + b'",https://cdn.example/1.jpg\n', "not a CSV file"),
        ("new.jsonl", b'{"id": "sku-1", "images": ["https://cdn.example/1.jpg"]}\n[1]\n', "line 2"),
        ("new.jsonl", b'{"id": "sku-1", "images": ["https://cdn.example/1.jpg"], "n": ' + b"9" * 5000 + b"}", "digits"),
        ("new.jsonl", b'{"id": "sku-1", "images": ["https://cdn.example/1.jpg"], "title": "\\ud800"}', "surrogate"),
        ("new.xlsx", b"PK", "expected a .csv or a .jsonl"),
    ],
)
def test_an_uploaded_catalogue_that_cannot_be_read_says_why(
    settings: Settings, name: str, content: bytes, message: str
) -> None:
    with TestClient(create_app(settings), headers=AUTH) as client:
        refused = client.post("/v1/catalogues", files={"file": (name, content, "text/csv")})
    assert refused.status_code == 422 and message in refused.json()["detail"], refused.text


def test_a_body_that_is_not_json_says_what_to_send(settings: Settings) -> None:
    """It said "JSON decode error" at ["body", 11], and for text/plain "Input should be a valid dictionary"."""
    with TestClient(create_app(settings), headers=AUTH) as client:
        broken = client.post("/v1/products", content=b'{"items": [', headers={"content-type": "application/json"})
        [said] = broken.json()["detail"]
        assert broken.status_code == 422 and said["msg"].startswith("the body is not valid JSON"), broken.text
        assert "at character 11" in said["msg"], broken.text
        plain = client.patch("/v1/products/p", content=b'{"price": 3}', headers={"content-type": "text/plain"})
        [said] = plain.json()["detail"]
        assert plain.status_code == 422 and "Content-Type: application/json" in said["msg"], plain.text
    with TestClient(create_app(settings), headers=AUTH) as client:
        as_text = client.post("/v1/search", data={"image": "not a file"})
        assert as_text.status_code == 422 and "image: sent as a text field, not a file" in as_text.json()["detail"]


def test_two_catalogue_files_in_one_upload_are_refused(settings: Settings) -> None:
    """The second was dropped: a 202 for one catalogue's products."""
    one, other = b"id,image\na,https://cdn.example/a.jpg\n", b"id,image\nb,https://cdn.example/b.jpg\n"
    with TestClient(create_app(settings), headers=AUTH) as client:
        both = client.post("/v1/catalogues", files=[("file", ("a.csv", one, "text/csv")), ("file", ("b.csv", other))])
    assert both.status_code == 422 and "file: sent more than once" in both.json()["detail"], both.text


def test_an_uploaded_catalogues_variants_that_name_none_are_refused(settings: Settings) -> None:
    """Variants " , " meant every served variant, while "variants": [] in JSON is refused."""
    one = b"id,image\na,https://cdn.example/a.jpg\n"
    with TestClient(create_app(settings), headers=AUTH) as client:
        none = client.post("/v1/catalogues", files={"file": ("a.csv", one, "text/csv")}, data={"variants": " , "})
    assert none.status_code == 422 and "names no variant" in none.json()["detail"], none.text


def test_what_a_request_sent_comes_back_in_a_message_at_a_bounded_length(indexed_client: TestClient) -> None:
    long_name = "v" * 100_000
    unknown = indexed_client.post("/v1/search", json={"text": "red", "variant": long_name})
    assert unknown.status_code == 404 and len(unknown.text) < 1_200 and "characters)" in unknown.json()["detail"]
    title = indexed_client.post("/v1/products", json={"items": [{"id": "p", "images": ["x"], "title": "t" * 10**6}]})
    assert title.status_code == 422 and len(title.text) < 1_200, title.text[:300]
    assert "at most 2000" in title.text


def test_a_message_quoting_what_no_utf_8_holds_is_still_sent() -> None:
    """A lone surrogate quoted in an error message (the gateway refuses them in JSON, but any message may quote what
    was sent) is escaped: the handler answering the error must not fail itself."""
    assert bounded("no product '\ud800'").encode() == b"no product '\\ud800'"


def test_patches_cannot_grow_a_products_metadata_past_its_bounds(settings: Settings) -> None:
    with TestClient(create_app(settings), headers=AUTH) as client:
        image = f"data:image/png;base64,{base64.b64encode(encode(photo((9, 9, 9)), 'PNG')).decode()}"
        client.app.state.runtime.pipeline.run([CatalogueItem(id="p", images=[image], title="plain")], ["tiny"])
        answers = [client.patch("/v1/products/p", json={f"note{n}": "x" * 1900}).status_code for n in range(10)]
        assert answers[:8] == [200] * 8 and answers[-1] == 422  # each patch fits; their sum does not
        refused = client.patch("/v1/products/p", json={"note9": "x" * 1900})
        assert "bytes as JSON: at most 16384" in refused.text
        assert client.patch("/v1/products/p", json={"price": 12}).status_code == 200  # small changes still go


def test_oversized_upload_is_refused(settings: Settings) -> None:
    settings.max_image_bytes = 1000
    with TestClient(create_app(settings), headers=AUTH) as small:
        big = encode(photo((5, 5, 5), size=(400, 400)), "PNG")
        response = small.post("/v1/search", files={"image": ("big.png", big, "image/png")})
    assert response.status_code == 413 and "larger than 1000 bytes" in response.json()["detail"]


def test_models_health_and_docs(indexed_client: TestClient) -> None:
    models = {m["name"]: m for m in indexed_client.get("/v1/models").json()}
    assert models["tiny"]["served"] and models["tiny"]["available"] and models["tiny"]["indexed_points"] == 12
    assert models["tiny"]["card"]["stage"] == "test" and models["tiny"]["embedding_dim"] == 32
    assert models["effl2-minilm"]["backbone"] == "efficientnet_lite2" and models["RN50/openai"]["backbone"] == "RN50"
    assert not models["ViT-B-16/openai"]["available"] and "weights" in models["ViT-B-16/openai"]["problem"]
    assert indexed_client.get("/healthz").json() == {"status": "ok"}
    assert indexed_client.get("/readyz").json() == {"status": "ready", "variants": ["tiny"]}
    schema = indexed_client.get("/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert indexed_client.get("/docs").status_code == 200
    assert "StyleFinder" in indexed_client.get("/").text
    assert indexed_client.get("/v1/images/not-a-uuid").status_code == 422
    assert indexed_client.get("/v1/images/00000000-0000-0000-0000-000000000000").status_code == 404
