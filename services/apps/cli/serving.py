"""`stylefinder serve`, `worker`, `embedder`: the processes of a deployment."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.apps.cli.common import check_store_free, here_or_at_gateway, show_progress
from services.apps.cli.common import settings as _settings
from services.catalogue import photo_folders, read_catalogue
from services.errors import ServiceUnavailable

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from services.apps.gateway_client import GatewayClient
    from services.apps.runtime import Runtime
    from services.settings import Settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--index",
    "catalogues",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="catalogue (folder, CSV, JSONL) to index in the background once the server is up; repeatable",
)
@click.option("--variant", "variants", multiple=True, help="variant to index into (default: all served)")
def serve(host: str, port: int, catalogues: tuple[Path, ...], variants: tuple[str, ...]) -> None:
    """Run the gateway; with an embedded store the indexing worker runs inside it."""
    _log_as_a_service()
    import uvicorn

    from services.apps.gateway.app import create_app
    from services.apps.runtime import target_variants
    from services.models import Registry

    settings = _settings()
    # Said here in one line: inside the server's start-up they were a traceback and exit 3.
    check_store_free(settings)  # a second `serve` on one data folder
    if catalogues and settings.redis_url:
        _check_broker(settings.redis_url)  # --index queues the catalogues as the server starts
    listed = {catalogue: list(read_catalogue(catalogue)) for catalogue in catalogues}
    # Checked before the server starts: a bad --variant is one line here, not a failure per queued item.
    target_variants(Registry.from_settings(settings), variants)
    # The operator named these catalogues, so the server may read their photos from disk.
    settings.allowed_image_roots += photo_folders(item for items in listed.values() for item in items)

    def index_catalogues(rt: Runtime) -> None:
        targets = rt.index_variants(variants)  # without --variant: every variant served now, switched ones too
        for catalogue, items in listed.items():
            job_id = rt.ingest.submit(items, targets)
            click.echo(f"indexing {len(items)} items from {catalogue} in the background: GET /v1/jobs/{job_id}")
            threading.Thread(target=show_progress, args=(rt, job_id, catalogue.name), daemon=True).start()

    uvicorn.Server(served_config(create_app(settings, on_ready=index_catalogues), settings, host, port)).run()


def served_config(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """How the gateway is served: X-Forwarded-For is believed only from the proxies the settings name (uvicorn
    would believe any loopback client, which could then pick its own rate-limit bucket)."""
    import uvicorn

    trusted = ",".join(settings.trusted_proxies)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        log_config=None,  # uvicorn's lines go through this process's one handler (JSON lines by default)
        access_log=False,  # the gateway logs each request itself, with its request id and route template
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
    )


@click.command()
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="serve this worker's Prometheus metrics on this port",
)
def worker(metrics_port: int | None) -> None:
    """Run a Celery indexing worker process (distributed mode: set REDIS_URL, and QDRANT_URL for a server)."""
    _log_as_a_service()
    from prometheus_client import start_http_server

    from indexer.worker import run_worker_process
    from services.apps.runtime import worker_celery

    settings = _settings()
    if not settings.redis_url:
        raise click.UsageError("a worker process needs a broker: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    check_store_free(settings)  # else each batch it took would meet the lock, and wait for ever
    if metrics_port is not None:
        start_http_server(metrics_port)  # batches, retries, item failures by cause, jobs by outcome, embedding
    run_worker_process(worker_celery(settings), settings.worker_concurrency, embedded_store=not settings.qdrant_url)


@click.command()
@click.argument("name", default="default")
@click.option("--to", "variant", default=None, help="the variant NAME serves from now on")
@click.option("--rollback", is_flag=True, help="serve what NAME served before its last switch")
@click.option(
    "--forget-rollback",
    is_flag=True,
    help="drop what NAME would roll back to: it stops being served and getting new products",
)
@click.option(
    "--gate",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="first evaluate what NAME serves now and the new variant on this data (what `stylefinder eval` reads); "
    "no switch when the new one scores lower",
)
@click.option(
    "--gate-limit", type=click.IntRange(min=1), default=None, help="with --gate on a catalogue: its first N products"
)
def switch(
    name: str, variant: str | None, rollback: bool, forget_rollback: bool, gate: Path | None, gate_limit: int | None
) -> None:
    """Point a served name (searches that name no variant use `default`) at another variant at one instant, once
    its collection holds every product; through the running gateway when it owns the embedded store."""
    if [variant is not None, rollback, forget_rollback].count(True) != 1:
        raise click.UsageError("give one of --to <variant>, --rollback or --forget-rollback")
    if gate is not None and variant is None:
        raise click.UsageError("--gate compares a new variant with the one served now: give it with --to")
    settings = _settings()
    compared = None  # what the gate compared the new variant with: the switch happens only while it is served
    if gate is not None and variant is not None:
        compared = here_or_at_gateway(
            settings, lambda rt: rt.serving().get(name), lambda client: client.served_names().get(name)
        )
        check_gate(settings, name, compared, variant, gate, gate_limit)
    to = None if rollback else variant

    def here(rt: Runtime) -> dict:
        if forget_rollback:
            return {"name": name, "variant": rt.forget_rollback(name), "previous": None}
        now, previous = rt.switch(name, to, compared)
        return {"name": name, "variant": now, "previous": previous}

    def there(client: GatewayClient) -> dict:
        return client.switch(name, variant, rollback, compared, forget_rollback)

    switched = here_or_at_gateway(settings, here, there)
    if forget_rollback:
        click.echo(f"{switched['name']} serves {switched['variant']}, with nothing to roll back to")
    else:
        click.echo(f"{switched['name']} serves {switched['variant']} (before: {switched['previous'] or 'nothing'})")


def check_gate(
    settings: Settings, name: str, serving: str | None, candidate: str, data: Path, limit: int | None
) -> None:
    """Stop the switch (exit 1) when `candidate` scores below what `name` serves now on `data`, both measured by
    `stylefinder eval`'s own evaluation."""
    from services.evaluation import evaluate_variant, headline

    if serving is None or serving == candidate:
        click.echo(f"gate: {name} serves {serving or 'nothing'} now, nothing to compare {candidate} with")
        return
    scores = {}
    for variant in (serving, candidate):
        report = evaluate_variant(settings, variant, data, limit)
        if report["trained_on_this_data"]:
            click.echo(f"gate: {variant} trained on this data ({report['trained_on_this_data']}): it is favoured")
        metric, scores[variant] = headline(report)
    click.echo(f"gate on {data}: {metric} {serving} {scores[serving]:.4f}, {candidate} {scores[candidate]:.4f}")
    if scores[candidate] < scores[serving]:
        raise click.ClickException(
            f"{candidate} scores {metric} {scores[candidate]:.4f}, below {scores[serving]:.4f} of {serving} that "
            f"{name} serves now: not switched (without --gate the switch goes ahead)"
        )


@click.command(name="worker-alive")
@click.option("--timeout", "timeout_s", default=5.0, show_default=True, help="seconds to wait for the answer")
def worker_alive(timeout_s: float) -> None:
    """Exit 0 when this host's indexing worker answers a ping through the broker (a container's healthcheck)."""
    from indexer.celery_app import create_celery  # the broker alone: the runtime's imports took 6 s of a 5 s check

    settings = _settings()
    if not settings.redis_url:
        raise click.UsageError("a worker process has a broker: set REDIS_URL as the worker has it")
    from kombu.exceptions import OperationalError

    node = f"celery@{socket.gethostname()}"
    try:
        answered = create_celery(settings).control.ping(destination=[node], timeout=timeout_s)
    except OperationalError as error:  # the broker itself does not answer
        raise click.ClickException(f"the broker at REDIS_URL did not answer: {error}") from None
    if not answered:
        raise click.ClickException(f"{node} did not answer a ping within {timeout_s:g} s")
    click.echo(f"{node} answered")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8001, show_default=True)
def embedder(host: str, port: int) -> None:
    """Run the HTTP embedding service (the GPU box); point gateway and workers at it with STYLEFINDER_EMBEDDER_URL."""
    _log_as_a_service()
    import uvicorn

    from services.apps.embedding_service import create_app

    uvicorn.run(create_app(_settings()), host=host, port=port, log_level="info")


def _check_broker(url: str) -> None:
    """ServiceUnavailable, in words, when Redis does not answer at `url`."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5).ping()
    except redis.RedisError as error:
        raise ServiceUnavailable(f"Redis (REDIS_URL) did not answer, so nothing can be queued: {error}") from None


def _log_as_a_service() -> None:
    """A service logs at INFO: its access lines and the indexing lines carry the request ids an operator follows."""
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
