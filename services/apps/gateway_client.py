"""The operator's side of the gateway API: submit catalogue items or a backfill, follow jobs to the end."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from services.catalogue import CatalogueItem
from services.errors import ServiceUnavailable, StyleFinderError, from_response
from services.references import is_local_path

REQUEST_ITEMS = 250


class GatewayClient:
    def __init__(
        self, url: str, api_key: str | None = None, timeout_s: float = 120.0, max_request_bytes: int = 64 << 20
    ) -> None:
        """`max_request_bytes`: the gateway's cap on a request body (its STYLEFINDER_MAX_REQUEST_BYTES)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers)
        self.request_bytes = max_request_bytes // 2  # room for the JSON around the items
        self.accepted: list[str] = []  # every job the gateway took from this client: an interrupted command names them

    def reachable(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def submit(self, items: Sequence[CatalogueItem], variants: Sequence[str] | None) -> list[str]:
        """Local photos travel inline (the gateway may not read this machine's folders), so requests are cut by
        size as well as by count; returns job ids. A refusal part way names the jobs already accepted, which the
        gateway goes on with."""
        jobs: list[str] = []
        for batch in self._requests(items):
            body = {"items": batch, "variants": list(variants or []) or None}
            try:
                jobs.append(self._job("/v1/products", body))
            except StyleFinderError as error:
                if jobs:  # the same refusal (its kind, status, Retry-After), saying what was accepted before it
                    error.message += (
                        f" (the items sent before it were accepted: the gateway goes on with job {', '.join(jobs)})"
                    )
                raise
        return jobs

    def _requests(self, items: Sequence[CatalogueItem]) -> Iterator[list[dict]]:
        """The items as the gateway takes them, in requests of at most REQUEST_ITEMS items and `request_bytes` of
        JSON (an item larger than that goes alone, and the gateway says what is too large)."""
        batch: list[dict] = []
        size = 0
        for item in items:
            row = _inline_local_images(item).model_dump(exclude_none=True)
            row_size = len(json.dumps(row))
            if batch and (len(batch) == REQUEST_ITEMS or size + row_size > self.request_bytes):
                yield batch
                batch, size = [], 0
            batch.append(row)
            size += row_size
        if batch:
            yield batch

    def reindex(self, source: str, target: str) -> str:
        return self._job("/v1/reindex", {"from": source, "to": target})

    def _job(self, path: str, body: dict) -> str:
        """A job the gateway accepts: its id, also kept in `accepted`."""
        job_id = self._call("POST", path, json=body)["job_id"]
        self.accepted.append(job_id)
        return job_id

    def switch(
        self, name: str, to: str | None, rollback: bool, expect: str | None = None, forget_rollback: bool = False
    ) -> dict:
        """The gateway points a served name at another variant (or back), while it serves `expect` if given; or
        forgets what the name would roll back to."""
        body = {"name": name, "rollback": rollback, "to": to, "expect": expect, "forget_rollback": forget_rollback}
        return self._call("POST", "/v1/switch", json=body)

    def served_names(self) -> dict[str, str]:
        """Each served name and the variant it serves now (`default` always)."""
        return self._call("GET", "/v1/switch")

    def store_states(self) -> list[dict]:
        """Each collection of the gateway's store: points, vectors, points its graph does not cover."""
        return self._call("GET", "/v1/store")  # type: ignore[return-value]

    def snapshot(self, target: str) -> dict:
        """The gateway snapshots its data folder into `target`, a path on its machine."""
        return self._call("POST", "/v1/snapshots", json={"to": target})

    def follow(
        self, job_ids: Sequence[str], on_progress: Callable[[dict], None], failures: int, poll_s: float = 0.5
    ) -> list[dict]:
        """Poll until every job is done; `on_progress` gets summed counts after each poll. The polls list no
        failure (a job of 10,000 failures read them all each time); the reports returned list each job's first
        `failures`."""
        while True:
            reports = [self._call("GET", f"/v1/jobs/{job_id}", params={"failures": 0}) for job_id in job_ids]
            totals = {key: sum(r[key] for r in reports) for key in ("total", "indexed", "unchanged", "failed")}
            on_progress(totals)
            if all(r["state"] == "done" for r in reports):
                return [self._call("GET", f"/v1/jobs/{job_id}", params={"failures": failures}) for job_id in job_ids]
            time.sleep(poll_s)

    def _call(self, method: str, path: str, **request: object) -> dict:
        """The gateway's refusals arrive as the StyleFinderError it raised; silence as ServiceUnavailable."""
        try:
            response = self.http.request(method, path, **request)  # type: ignore[arg-type]
        except httpx.TransportError as error:
            raise ServiceUnavailable(f"the gateway at {self.http.base_url} did not answer: {error}") from None
        if response.status_code >= 400:
            body = response.json() if response.headers.get("content-type") == "application/json" else None
            raise from_response(response.status_code, body, "the gateway")
        return response.json()


def _inline_local_images(item: CatalogueItem) -> CatalogueItem:
    images = [
        "data:;base64," + base64.b64encode(Path(image).read_bytes()).decode() if is_local_path(image) else image
        for image in item.images
    ]
    return item.model_copy(update={"images": images})
