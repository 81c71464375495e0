"""What the commands share: settings from the environment, progress bars and the one summary of indexing work,
and the choice between working on the store here or through the gateway that owns it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError
from tqdm import tqdm

from services.catalogue import CatalogueItem
from services.errors import InvalidInput, ServiceUnavailable, StyleFinderError
from services.settings import Settings

if TYPE_CHECKING:
    from services.apps.gateway_client import GatewayClient
    from services.apps.runtime import Runtime

T = TypeVar("T")

COUNTS = ("indexed", "unchanged", "failed")
FAILURES_NAMED = 50  # failures a command names; "... and N more" counts the rest


def settings() -> Settings:
    """Settings from the environment; a bad value is the operator's to fix, said in one line."""
    try:
        read = Settings()
    except ValidationError as error:
        problems = "; ".join(f"STYLEFINDER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise InvalidInput(f"invalid setting: {problems}") from None
    folder = read.data_dir
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"invalid setting: STYLEFINDER_DATA_DIR: {folder} is a file, not a folder")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(f"invalid setting: STYLEFINDER_DATA_DIR: {folder} cannot be written by this user")
    return read


def number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "-")


def show_progress(rt: Runtime, job_id: str, label: str) -> None:
    """A progress bar on the server's console for a catalogue it indexes in the background."""
    with tqdm(desc=label, unit="item") as bar:
        while True:
            status = rt.jobs.status(job_id, failures=0)
            if status is None:
                return
            show_counts(bar, status.model_dump())
            if status.state == "done":
                return
            time.sleep(1)


def gateway_at(settings: Settings, url: str) -> GatewayClient:
    """The gateway at `url`, with this machine's admin key (or STYLEFINDER_API_KEY) and its cap on request bodies."""
    from services.apps.api_keys import local_admin_key
    from services.apps.gateway_client import GatewayClient

    return GatewayClient(url, local_admin_key(settings), max_request_bytes=settings.max_request_bytes)


def answering_gateway(settings: Settings, url: str, unanswered: Callable[[], StyleFinderError]) -> GatewayClient:
    """The gateway at `url` once it answers GET /healthz (2 s), else `unanswered()` raised: a silent one held a
    command for its request's whole timeout (120 s)."""
    client = gateway_at(settings, url)
    if not client.reachable():
        raise unanswered()
    return client


def check_store_free(settings: Settings) -> None:
    """StoreLocked when another process owns the embedded store (a Qdrant server has no single owner)."""
    from services.store import check_unowned

    if not settings.qdrant_url:
        check_unowned(settings.store_path)


def here_or_at_gateway(settings: Settings, here: Callable[[Runtime], T], there: Callable[[GatewayClient], T]) -> T:
    """`here` on this process's own runtime, or `there` through the running gateway when it owns the embedded store
    (with STYLEFINDER_API_KEY, or this machine's admin key file)."""
    from services.store import StoreLocked

    try:
        check_store_free(settings)  # before loading anything when the gateway owns the store
        from services.apps.runtime import Runtime

        rt = Runtime.build(settings)
    except StoreLocked as locked:
        unanswered = (
            f"{locked} No gateway answers at {settings.gateway_url}: where the process that owns it serves "
            "elsewhere, set STYLEFINDER_GATEWAY_URL to its address."
        )
        client = answering_gateway(settings, settings.gateway_url, lambda: StoreLocked(unanswered))
        click.echo(f"the store is owned by the gateway at {settings.gateway_url}; sending the work there", err=True)
        return there(client)
    try:
        return here(rt)
    finally:
        rt.close()


def direct_or_via_gateway(
    settings: Settings, server: str | None, direct: Callable[[Runtime], None], via: Callable, total: int | None
) -> None:
    """Indexing work on the store directly, unless a running gateway owns it (embedded store) or --server is given:
    then the gateway runs it as jobs, followed here with a progress bar."""

    def follow(client: GatewayClient) -> None:
        try:
            job_ids = via(client)
            with tqdm(total=total, unit="item") as bar:
                reports = client.follow(job_ids, lambda totals: show_counts(bar, totals), FAILURES_NAMED)
        except KeyboardInterrupt:  # only this command stops: what the gateway accepted is its work now
            if client.accepted:
                where = f"{client.http.base_url}/v1/jobs/{{id}}"
                click.echo(f"stopped; the gateway goes on with job {', '.join(client.accepted)} ({where})", err=True)
            raise
        counts = {key: sum(r[key] for r in reports) for key in COUNTS}
        _report(counts, [f for r in reports for f in r["failures"]], None)

    if server is not None:
        unanswered = f"no gateway answers at {server} (GET /healthz): start one there, or leave out --server"
        follow(answering_gateway(settings, server, lambda: ServiceUnavailable(unanswered)))
    else:
        here_or_at_gateway(settings, direct, follow)


def index_directly(rt: Runtime, items: Sequence[CatalogueItem], variants: list[str], kind: str) -> None:
    """The same per-batch function as a Celery worker (retries with backoff, failures recorded), run here."""
    from dataclasses import replace

    from indexer.direct import index_here
    from indexer.jobs import SqliteJobBoard

    indexing = replace(rt.indexing, jobs=SqliteJobBoard(":memory:"))
    with tqdm(total=len(items), unit="item") as bar:
        status = index_here(
            indexing,
            items,
            variants,
            rt.settings.index_batch_size,
            lambda counts: show_counts(bar, counts),
            kind,
        )
    report = status.model_dump()
    _report(report, report["failures"], variants)


def show_counts(bar: tqdm, counts: Mapping[str, Any]) -> None:
    bar.total = counts["total"]
    bar.n = sum(counts[key] for key in COUNTS)
    bar.set_postfix({key: counts[key] for key in COUNTS})
    bar.refresh()


def _report(counts: Mapping[str, Any], failures: Sequence[Mapping[str, Any]], variants: list[str] | None) -> None:
    """The same summary and failure lines whichever path did the work; exit 1 when every item failed (a wrong
    photo folder, an embedder down): a script must not take that run for a catalogue loaded. Some failures
    among items indexed exit 0, each named: re-running retries them."""
    into = f" into {variants}" if variants else ""
    click.echo(f"{counts['indexed']} indexed, {counts['unchanged']} unchanged, {counts['failed']} failed{into}")
    named = failures[:FAILURES_NAMED]
    for failure in named:
        click.echo(f"  failed {failure['item_id']}: {failure['reason']}", err=True)
    if counts["failed"] > len(named):
        click.echo(f"  ... and {counts['failed'] - len(named)} more", err=True)
    if counts["failed"] and not counts["indexed"] and not counts["unchanged"]:
        raise click.ClickException(f"every item failed ({counts['failed']}): nothing was indexed")
