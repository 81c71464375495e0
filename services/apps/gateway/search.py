"""`POST /v1/search` and the result photos it links to."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from PIL import Image
from starlette.datastructures import UploadFile

from services.apps.gateway.deps import Search, runtime
from services.apps.gateway.schemas import SearchRequest, SearchResponse, SearchResult
from services.apps.runtime import Runtime
from services.attributes import FIELDS, Interpreted, interpret, rerank, shown
from services.errors import FetchError, ImageDecodeError, InvalidInput, NotFound, TooLarge, TransientFetchError
from services.images import decode_image, normalise_sketch
from services.store import FACET_FIELDS, PHOTO, Hit

router = APIRouter(tags=["search"])
Rt = Annotated[Runtime, Depends(runtime)]
# Where a photo came from (a server path, an internal URL) and its hash are for operators (GET /v1/products),
# not for shoppers: search results link the photo itself (image_url).
BACK_OFFICE_FIELDS = ("image", "image_sha256")
UPLOADS = ("image", "sketch")  # multipart file fields; `sketch` is an image searched as a drawing
MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "sketch": {"type": "string", "format": "binary", "description": "a drawing (same as image with mode=sketch)"},
        "text": {"type": "string"},
        "mode": {"type": "string", "enum": ["photo", "sketch"], "default": "photo"},
        "retrieval": {"type": "string", "enum": ["direct", "cluster"], "default": "direct"},
        "interpret": {"type": "boolean", "default": True},
        "variant": {"type": "string"},
        "top_k": {"type": "integer", "default": 10},
        "filters": {"type": "string", "description": 'JSON object, e.g. {"gender": "Men", "price_max": 40}'},
    },
}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` references replaced by the definitions, so that it is valid where
    FastAPI places it inside the OpenAPI document (its own `$defs` would not resolve there)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    dependencies=[Search],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": _inlined(SearchRequest.model_json_schema())},
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
            }
        }
    },
)
async def search(request: Request, rt: Rt) -> Response:
    """Top-K products for an uploaded photo (multipart field `image`), a drawing (field `sketch`, or an image
    with `mode=sketch`), a photo URL or base64, or a text. The `Server-Timing` header says where the time
    went: read, decode, embed, store (milliseconds)."""
    started = time.perf_counter()
    query, upload = await _read_query(request, rt.settings.max_image_bytes)
    variant = query.variant or rt.default_variant
    rt.check_servable(variant)
    timings = {"read": (time.perf_counter() - started) * 1000}
    found = await run_in_threadpool(_run, rt, query, variant, upload, timings)
    images = str(request.url_for("image", point_id="-")).removesuffix("-")  # once: url_for walks every route
    results = [
        SearchResult(
            product_id=hit.product_id,
            score=hit.score,
            payload={key: value for key, value in hit.payload.items() if key not in BACK_OFFICE_FIELDS},
            image_url=images + hit.point_id,
        )
        for hit in found.hits
    ]
    took_ms = (time.perf_counter() - started) * 1000
    body = SearchResponse(results=results, variant=variant, took_ms=took_ms, interpreted=found.interpreted)
    timing = ", ".join(f"{step};dur={ms:.2f}" for step, ms in timings.items())
    # Serialised once, here: returned as a model, FastAPI would validate it against response_model again.
    return Response(body.model_dump_json(), media_type="application/json", headers={"Server-Timing": timing})


@router.get("/v1/facets", dependencies=[Search])
async def facets(
    rt: Rt, field: str = "category", variant: str | None = None, limit: int = Query(50, ge=1, le=500)
) -> dict[str, Any]:
    """How many catalogue photos carry each value of a filterable field (the page's filter choices), counted
    by the store's payload index."""
    if field not in FACET_FIELDS:
        raise InvalidInput(f"field must be one of {', '.join(FACET_FIELDS)}")
    name = variant or rt.default_variant
    rt.check_servable(name)
    counts = await run_in_threadpool(rt.store.facets, name, field, limit)
    return {"field": field, "variant": name, "values": [{"value": value, "count": n} for value, n in counts]}


@router.get("/v1/images/{point_id}", name="image")  # product photos are public, like a shop's pages
async def image(point_id: UUID, rt: Rt) -> Response:
    data = rt.media.get(str(point_id))
    if data is None:
        raise NotFound("no such image")
    return Response(data, media_type=_sniff(data), headers={"Cache-Control": "public, max-age=86400"})


async def _read_query(request: Request, max_bytes: int) -> tuple[SearchRequest, bytes | None]:
    """One endpoint, two encodings: a multipart upload (browsers, curl -F) or a JSON body (backends)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        uploads = {key: value for key, value in form.items() if key in UPLOADS and isinstance(value, UploadFile)}
        data = None
        for key, upload in uploads.items():
            data = await upload.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise TooLarge(f"{key} larger than {max_bytes} bytes")
        fields: dict = {
            key: value for key, value in form.items() if key not in UPLOADS and isinstance(value, str) and value
        }
        if "sketch" in uploads and fields.setdefault("mode", "sketch") != "sketch":
            raise InvalidInput("a `sketch` upload is searched as a drawing: leave out mode, or send it as `image`")
        if "filters" in fields:
            try:
                fields["filters"] = json.loads(fields["filters"])
            except json.JSONDecodeError as error:
                raise InvalidInput(f"filters must be a JSON object: {error}") from None
        return SearchRequest.model_validate(fields, context={"uploads": list(uploads)}), data
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("send multipart/form-data with an `image` file, or a JSON body") from None
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    return SearchRequest.model_validate(body), None


@dataclass
class _Found:
    hits: list[Hit]
    interpreted: dict[str, str | list[str]] | None = None


def _run(rt: Runtime, query: SearchRequest, variant: str, upload: bytes | None, timings: dict[str, float]) -> _Found:
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = (now - clock) * 1000
        clock = now

    using = PHOTO
    if query.text:
        vector = rt.embedder.embed_texts(variant, [query.text])[0]
    else:
        picture = _query_photo(rt, query, upload)
        if query.mode == "sketch":
            picture, using = normalise_sketch(picture), rt.registry[variant].sketch_vector
        lap("decode")
        vector = rt.embedder.embed_images(variant, [picture])[0]
    lap("embed")
    if query.text and query.interpret:
        understood = interpret(query.text, rt.store.vocabulary(variant, list(FIELDS)))
        found = _Found(_understood_hits(rt, query, variant, vector, understood), shown(understood))
    else:
        found = _Found(rt.store.search(variant, vector, query.top_k, query.filters, using, query.retrieval))
    lap("store")
    return found


def _understood_hits(
    rt: Runtime, query: SearchRequest, variant: str, vector: np.ndarray, understood: Interpreted
) -> list[Hit]:
    """The nearest products; the nearest with all understood attributes; the nearest with each one. Ranked
    together with the attributes as soft filters: a product with more of them rises, the rest stay."""
    hits = rt.store.search(variant, vector, query.top_k, query.filters, retrieval=query.retrieval)
    unset = {field: values for field, values in understood.items() if getattr(query.filters, field) is None}
    narrowings = [unset] if unset else []
    if len(unset) > 1:
        narrowings += [{field: values} for field, values in unset.items()]
    for narrowing in narrowings:
        narrowed = query.filters.model_copy(update=narrowing)  # the shopper's own filters stand
        hits += rt.store.search(variant, vector, query.top_k, narrowed, retrieval=query.retrieval)
    unique = list({hit.product_id: hit for hit in hits}.values())
    scores = rerank([(hit.score, hit.payload) for hit in unique], understood)
    for hit, score in zip(unique, scores, strict=True):
        hit.score = score
    return sorted(unique, key=lambda hit: -hit.score)[: query.top_k]


def _query_photo(rt: Runtime, query: SearchRequest, upload: bytes | None) -> Image.Image:
    """The shopper's photo or drawing, from the upload, a URL or base64; a problem with it names the image as the
    cause. A drawing keeps its transparency: strokes on a transparent canvas are its opaque pixels."""
    try:
        if upload is not None:
            data = upload
        elif query.image_url:
            data = rt.fetcher.download(query.image_url)  # http(s) to public hosts only: never a path
        else:
            data = rt.fetcher.decode_base64(query.image_base64 or "")
        return decode_image(data, keep_alpha=query.mode == "sketch")
    except (FetchError, TransientFetchError, ImageDecodeError) as error:
        raise type(error)(f"unusable image: {error}") from None


def _sniff(data: bytes) -> str:
    signatures = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"GIF8": "image/gif", b"BM": "image/bmp"}
    for magic, kind in signatures.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
