"""`POST /v1/search`, what it may filter on, and the result photos it links to."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from services.apps.gateway.deps import KeyFirst, Search, runtime
from services.apps.gateway.schemas import (
    Facet,
    FacetValue,
    FilterChoices,
    RegionOut,
    SearchResponse,
    SearchResult,
    each_field_once,
)
from services.apps.runtime import Runtime
from services.errors import InvalidInput, NotFound, TooLarge
from services.payload import shopper_payload
from services.regions import GARMENTS
from services.search import MAX_OFFSET, MAX_TOP_K, SearchRequest
from services.store import FACET_FIELDS
from services.telemetry import SEARCH_SECONDS

router = APIRouter(tags=["search"], route_class=KeyFirst)
Rt = Annotated[Runtime, Depends(runtime)]
UPLOADS = ("image", "sketch")  # multipart file fields; `sketch` is an image searched as a drawing
LIST_FIELDS = {"like", "unlike", "box"}
FILTER_VALUES = 100  # values listed per field in /v1/filters, most frequent first
MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "sketch": {"type": "string", "format": "binary", "description": "a drawing (same as image with mode=sketch)"},
        "text": {"type": "string", "description": "words, alone or with the photo or drawing"},
        "like": {"type": "string", "description": "product ids, comma-separated or a JSON list: more like these"},
        "unlike": {"type": "string", "description": "product ids, comma-separated or a JSON list: less like these"},
        "garment": {"type": "string", "enum": list(GARMENTS)},
        "box": {"type": "string", "description": "x0,y0,x1,y1: the part of the photo to search, in its pixels"},
        "offset": {"type": "integer", "default": 0, "minimum": 0, "maximum": MAX_OFFSET},
        "mode": {"type": "string", "enum": ["photo", "sketch"], "default": "photo"},
        "retrieval": {"type": "string", "enum": ["direct", "cluster"], "default": "direct"},
        "interpret": {"type": "boolean", "default": True},
        "guess": {"type": "boolean", "default": True, "description": "false: no kind guessed from the photo"},
        "variant": {"type": "string"},
        "top_k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_TOP_K},
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
    """Top-K products for a photo (multipart field `image`, `image_url` or `image_base64`), a drawing (field
    `sketch`, or an image with `mode=sketch`), words (`text`), liked products (`like`, `unlike`), or several of
    them together. The `Server-Timing` header says where the time went (milliseconds by step)."""
    started = time.perf_counter()
    query, upload = await _read_query(request, rt.settings.max_image_bytes)
    variant = await run_in_threadpool(rt.resolve, query.variant)  # a served name stands for its variant now
    await run_in_threadpool(rt.check_servable, variant)
    read_ms = (time.perf_counter() - started) * 1000
    found = await run_in_threadpool(rt.searcher.search, query, variant, upload)
    images = str(request.url_for("image", point_id="-")).removesuffix("-")  # once: url_for walks every route
    body = SearchResponse(
        results=[
            SearchResult(
                product_id=hit.product_id,
                score=hit.score,
                payload=shopper_payload(hit.payload),
                image_url=images + hit.point_id,
            )
            for hit in found.hits
        ],
        variant=variant,
        took_ms=(time.perf_counter() - started) * 1000,
        interpreted=found.interpreted,
        guessed=found.guessed,
        regions=[RegionOut.of(region) for region in found.regions],
        region=RegionOut.of(found.region) if found.region else None,
        garments=found.garments,
    )
    steps = {"read": read_ms, **found.timings}
    kind = query.kind(upload is not None)
    for step, ms in {**steps, "total": body.took_ms}.items():
        SEARCH_SECONDS.labels(kind, step).observe(ms / 1000)
    timing = ", ".join(f"{step};dur={ms:.2f}" for step, ms in steps.items())
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
    name = await run_in_threadpool(rt.resolve, variant)
    await run_in_threadpool(rt.check_servable, name)
    counts = await run_in_threadpool(rt.store.facets, name, field, limit)
    return {"field": field, "variant": name, "values": [{"value": value, "count": n} for value, n in counts]}


@router.get("/v1/filters", dependencies=[Search])
async def filters(rt: Rt, variant: str | None = None) -> FilterChoices:
    """What a page's filter sidebar offers: each filterable field the catalogue's products carry, with its
    values and their counts, and whether they carry a price (filtered by price_min and price_max)."""
    name = await run_in_threadpool(rt.resolve, variant)
    await run_in_threadpool(rt.check_servable, name)

    def read() -> FilterChoices:
        counted = {field: rt.store.facets(name, field, FILTER_VALUES) for field in FACET_FIELDS}
        return FilterChoices(
            variant=name,
            facets=[
                Facet(field=field, values=[FacetValue(value=value, count=n) for value, n in counts if value != ""])
                for field, counts in counted.items()
                if any(value != "" for value, _ in counts)
            ],
            price=rt.store.carries(name, "price"),
        )

    return await run_in_threadpool(read)


@router.get("/v1/images/{point_id}", name="image")  # product photos are public, like a shop's pages
async def image(point_id: UUID, rt: Rt) -> Response:
    shown = await run_in_threadpool(rt.media.shown, str(point_id))  # a HEIC or a TIFF is sent as a JPEG of it
    if shown is None:
        raise NotFound("no such image")
    data, kind = shown
    return Response(data, media_type=kind, headers={"Cache-Control": "public, max-age=86400"})


async def _read_query(request: Request, max_bytes: int) -> tuple[SearchRequest, bytes | None]:
    """One endpoint, two encodings: a multipart upload (browsers, curl -F) or a JSON body (backends)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        each_field_once(form, LIST_FIELDS)
        if texts := sorted(key for key in UPLOADS if isinstance(form.get(key), str)):
            raise InvalidInput(
                f"{', '.join(texts)}: sent as a text field, not a file: send the photo or drawing as a file part "
                "with a file name (curl -F image=@photo.jpg)"
            )
        uploads = {key: value for key, value in form.items() if key in UPLOADS and isinstance(value, UploadFile)}
        data = None
        for key, upload in uploads.items():
            data = await upload.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise TooLarge(f"{key} larger than {max_bytes} bytes ({max_bytes / 2**20:.3g} MiB): send a smaller one")
        fields: dict = {
            key: value for key, value in form.items() if key not in UPLOADS and isinstance(value, str) and value
        }
        if "sketch" in uploads and fields.setdefault("mode", "sketch") != "sketch":
            raise InvalidInput("a `sketch` upload is searched as a drawing: leave out mode, or send it as `image`")
        if "filters" in fields:
            fields["filters"] = _json(fields["filters"], "filters must be a JSON object")
        for key in LIST_FIELDS & set(fields):  # a JSON list, values separated by commas, or the field repeated
            values: list = []
            for text in (value.strip() for value in form.getlist(key) if isinstance(value, str)):
                if text.startswith("["):
                    values += _json(text, f"{key} must be a JSON list or values separated by commas")
                else:
                    values += [part.strip() for part in text.split(",")]
            fields[key] = values
        return SearchRequest.model_validate(fields, context={"uploads": list(uploads)}), data
    data = await request.body()
    try:
        body = _json(data, "the JSON body is not valid JSON")
    except InvalidInput:
        if "json" in kind:
            raise
        raise InvalidInput("send multipart/form-data with an `image` file, or a JSON body") from None
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    return SearchRequest.model_validate(body), None


def _json(text: str | bytes, refusal: str) -> Any:
    """JSON sent by a client, or `refusal` with the reason: not JSON, a number of more digits than Python reads, or
    a lone UTF-16 surrogate (`"\\ud800"` decodes to no character: nothing could store or answer it)."""
    try:
        value = json.loads(text)
        # only an escape "\\ud..." makes one: what was read is checked where the text holds such an escape
        escapes = ("\\ud", "\\uD") if isinstance(text, str) else (b"\\ud", b"\\uD")
        if any(escape in text for escape in escapes):
            json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{refusal}: it holds a lone UTF-16 surrogate (an escape such as \\ud800 alone)") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, and Python's limit on an integer's digits
        raise InvalidInput(f"{refusal}: {str(error)[:200]}") from None
    return value
