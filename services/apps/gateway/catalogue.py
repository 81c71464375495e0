"""Catalogue upkeep over HTTP: add (202 + job), inspect, change metadata, delete, reindex, snapshot."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator, model_validator

from indexer.jobs import JobStatus
from services.apps.backup import snapshot
from services.apps.gateway.deps import Admin, KeyFirst, Write, runtime
from services.apps.gateway.schemas import each_field_once
from services.apps.runtime import Runtime
from services.catalogue import CatalogueItem, fields_set_by, parse_catalogue, repeated_ids
from services.errors import InvalidInput, NotFound
from services.payload import PIPELINE_FIELDS, PRODUCT_ID, catalogue_payload
from services.store import SERVED_NAME, collection_name, delete_product_photos

router = APIRouter(tags=["catalogue"], route_class=KeyFirst)
Rt = Annotated[Runtime, Depends(runtime)]
MAX_ITEMS_PER_REQUEST = 1000
MAX_ITEMS_PER_FILE = 100_000


class IngestRequest(BaseModel):
    items: list[CatalogueItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    variants: list[str] | None = Field(
        None,
        min_length=1,
        description="variants to index into; all served ones when omitted (an empty list is refused)",
    )

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: list[CatalogueItem]) -> list[CatalogueItem]:
        repeated = repeated_ids(items)
        if repeated:
            raise ValueError(f"item ids repeat within the batch: {repeated}")
        return items


class JobAccepted(BaseModel):
    job_id: str
    status_url: str
    items: int
    variants: list[str]


class JobReport(JobStatus):
    queue_depth: int = Field(description="items of all unfinished jobs not yet indexed")


class ReindexRequest(BaseModel):
    source: str = Field(alias="from")
    target: str = Field(alias="to")


def _accepted(request: Request, job_id: str, items: int, variants: list[str]) -> JobAccepted:
    return JobAccepted(
        job_id=job_id, status_url=str(request.url_for("job", job_id=job_id)), items=items, variants=variants
    )


@router.post("/v1/products", status_code=status.HTTP_202_ACCEPTED, dependencies=[Write])
async def add_products(body: IngestRequest, request: Request, rt: Rt) -> JobAccepted:
    """Queue items for indexing; answers at once with a job to follow."""
    variants = rt.index_variants(body.variants)
    job_id = await run_in_threadpool(rt.ingest.submit, body.items, variants)
    return _accepted(request, job_id, len(body.items), variants)


@router.post("/v1/catalogues", status_code=status.HTTP_202_ACCEPTED, dependencies=[Write])
async def add_catalogue(
    request: Request,
    rt: Rt,
    file: Annotated[UploadFile, File(description="a .csv or .jsonl catalogue, as `stylefinder index` reads")],
    variants: Annotated[str | None, Form(description="comma-separated variants; all served ones when omitted")] = None,
) -> JobAccepted:
    """Queue a whole catalogue file as one job (the operator's page uploads one). Its images are URLs or absolute
    paths in the allowed image folders: an uploaded file has no folder for relative paths."""
    each_field_once(await request.form())
    data, name = await file.read(), file.filename or "upload"
    items = await run_in_threadpool(lambda: list(parse_catalogue(data, name, None)))
    if not items:
        raise InvalidInput(f"{name}: holds no products")
    if len(items) > MAX_ITEMS_PER_FILE:
        raise InvalidInput(f"{name}: {len(items)} products; upload at most {MAX_ITEMS_PER_FILE} per file")
    names = [name.strip() for name in variants.split(",") if name.strip()] if variants else None
    if names == []:  # as "variants": [] in JSON; an empty field is as none sent
        raise InvalidInput(f"variants {variants!r} names no variant: name them, comma-separated, or leave it out")
    chosen = rt.index_variants(names)
    job_id = await run_in_threadpool(rt.ingest.submit, items, chosen)
    return _accepted(request, job_id, len(items), chosen)


@router.get("/v1/jobs/{job_id}", name="job", dependencies=[Write])
async def job(
    job_id: str,
    rt: Rt,
    failures: Annotated[
        int | None, Query(ge=0, le=10**9, description="list at most this many failures (all when absent)")
    ] = None,
) -> JobReport:
    """A job's counts and its failures by item id. A page that polls a big catalogue asks for a few failures:
    `failed` still counts them all (10,000 failures were 2 MB a poll)."""
    report = await run_in_threadpool(rt.jobs.status, job_id, failures)
    if report is None:
        raise NotFound(f"no job {job_id}")
    depth = await run_in_threadpool(rt.jobs.active_items)
    return JobReport(**report.model_dump(), queue_depth=depth)


@router.get("/v1/products/{product_id}", dependencies=[Write])
async def get_product(product_id: str, request: Request, rt: Rt) -> dict[str, Any]:
    """What is stored for a product, per variant."""
    points = await run_in_threadpool(rt.store.product_points, product_id)
    if not points:
        raise NotFound(f"no product {product_id}")
    names = {collection_name(name): name for name in rt.registry.names()}
    return {
        "product_id": product_id,
        "variants": {
            names.get(collection, collection): [
                {
                    "point_id": str(r.id),
                    "payload": r.payload,
                    "image_url": str(request.url_for("image", point_id=str(r.id))),
                }
                for r in records
            ]
            for collection, records in points.items()
        },
    }


@router.patch("/v1/products/{product_id}", dependencies=[Write])
async def update_product(product_id: str, fields: dict[str, Any], rt: Rt) -> dict[str, Any]:
    """Change metadata in every variant's collection without re-embedding."""
    fixed = sorted(set(fields) & {*PIPELINE_FIELDS, "id", "images"})
    if fixed:
        raise InvalidInput(f"these fields cannot be patched: {fixed}; re-submit the product to change images")
    if not fields:
        raise InvalidInput("nothing to change")
    checked = CatalogueItem(id=product_id, images=["-"], **fields).payload()  # same rules as at ingestion
    if not set(checked) & set(fields):  # each field null or "": read as not given, as at ingestion
        raise InvalidInput('nothing to change: null or "" empties no field; re-submit the product without it')
    points = await run_in_threadpool(rt.store.product_points, product_id)
    if not points:
        raise NotFound(f"no product {product_id}")
    stored = catalogue_payload(next(iter(points.values()))[0].payload)
    changes = {key: value for key, value in checked.items() if key in fields_set_by(fields, stored)}
    kept = {key: value for key, value in stored.items() if key not in {*PIPELINE_FIELDS, PRODUCT_ID}}
    CatalogueItem(id=product_id, images=["-"], **{**kept, **changes})  # and the metadata as it will be: bounded
    touched = await run_in_threadpool(rt.store.set_product_payload, product_id, changes)
    if not touched:
        raise NotFound(f"no product {product_id}")
    return {"product_id": product_id, "updated_points": touched, "changes": changes}


@router.delete("/v1/products/{product_id}", dependencies=[Write])
async def delete_product(product_id: str, rt: Rt) -> dict[str, Any]:
    """Remove a product from every variant's collection, with its photos."""
    removed = await run_in_threadpool(delete_product_photos, rt.store, rt.media, product_id)
    if not removed:
        raise NotFound(f"no product {product_id}")
    return {"product_id": product_id, "deleted_points": len(removed)}


class SwitchRequest(BaseModel):
    name: str = Field("default", pattern=rf"^{SERVED_NAME.pattern}$", description="the served name (default: default)")
    to: str | None = Field(None, description="the variant it serves from now on")
    rollback: bool = Field(False, description="serve what it served before its last switch")
    expect: str | None = Field(None, description="switch only while the name serves this variant (what was compared)")
    forget_rollback: bool = Field(
        False, description="drop what it would roll back to: no longer served, it gets no new products"
    )

    @model_validator(mode="after")
    def _one_way(self) -> SwitchRequest:
        if [self.to is not None, self.rollback, self.forget_rollback].count(True) != 1:
            raise ValueError("give one of `to` (a variant), `rollback: true` or `forget_rollback: true`")
        return self


class Switched(BaseModel):
    name: str
    variant: str = Field(description="what the name serves now")
    previous: str | None = Field(description="what it served before (rollback goes back to it)")


@router.post("/v1/switch", dependencies=[Admin])
async def switch(body: SwitchRequest, rt: Rt) -> Switched:
    """Point a served name (searches without `variant` use `default`) at another variant, at one instant, once
    that variant's collection holds every product the name serves now; or roll the last switch back; or forget
    what it would roll back to."""
    if body.forget_rollback:
        return Switched(name=body.name, variant=await run_in_threadpool(rt.forget_rollback, body.name), previous=None)
    variant, previous = await run_in_threadpool(rt.switch, body.name, None if body.rollback else body.to, body.expect)
    return Switched(name=body.name, variant=variant, previous=previous)


@router.get("/v1/switch", dependencies=[Admin])
async def served_names(rt: Rt) -> dict[str, str]:
    """Each served name and the variant it serves now; `default` is always one (before its first switch, the first
    served variant)."""
    return await run_in_threadpool(rt.serving)


@router.get("/v1/store", dependencies=[Admin])
async def store_states(rt: Rt) -> list[dict[str, Any]]:
    """Each collection: its points, named vectors and, on the embedded store, the points its HNSW graph does not
    cover yet (searched exactly); `stylefinder store status` asks this when the gateway owns the store."""
    return [asdict(state) for state in await run_in_threadpool(rt.store.states)]


class SnapshotRequest(BaseModel):
    to: str = Field(description="an absolute path on the gateway's machine: a new or empty folder")


@router.post("/v1/snapshots", dependencies=[Admin])
async def take_snapshot(body: SnapshotRequest, rt: Rt) -> dict[str, Any]:
    """Snapshot the data folder (store, photos, jobs, keys, trained variants) while serving; `stylefinder store
    snapshot` calls this when the gateway owns the embedded store."""
    target = Path(body.to)
    if not target.is_absolute():
        raise InvalidInput("to: give an absolute path on the gateway's machine")
    manifest = await run_in_threadpool(snapshot, rt, target)
    return {"path": str(target), **manifest}


@router.post("/v1/reindex", status_code=status.HTTP_202_ACCEPTED, dependencies=[Admin])
async def reindex(body: ReindexRequest, request: Request, rt: Rt) -> JobAccepted:
    """Re-embed every product of one variant's collection into another variant's, as a job."""
    items, target = await run_in_threadpool(rt.reindexed, body.source, body.target)
    job_id = await run_in_threadpool(rt.ingest.submit, items, target, "reindex")
    return _accepted(request, job_id, len(items), target)
