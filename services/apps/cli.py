"""`stylefinder`: serve, index, reindex, worker, embedder, train, report, eval."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from tqdm import tqdm

from services.catalogue import CatalogueItem, photo_folders, read_catalogue
from services.errors import InvalidInput, ServiceUnavailable, StyleFinderError
from services.settings import Settings

if TYPE_CHECKING:
    from services.apps.runtime import Runtime
    from services.models import ModelCard
    from services.store import EdgeEngine

COUNTS = ("indexed", "unchanged", "failed")


def _settings() -> Settings:
    """Settings from the environment; a bad value is the operator's to fix, said in one line."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"STYLEFINDER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise InvalidInput(f"invalid setting: {problems}") from None


class _Cli(click.Group):
    """Failures the operator can act on (StyleFinderError) print one line and exit 1; bugs keep their traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except StyleFinderError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Cli)
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
def main(verbose: bool) -> None:
    """StyleFinder: visual search for fashion retail."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
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
    import uvicorn

    from services.apps.gateway.app import create_app
    from services.apps.runtime import target_variants
    from services.models import Registry

    settings = _settings()
    listed = {catalogue: list(read_catalogue(catalogue)) for catalogue in catalogues}
    # Checked before the server starts: a bad --variant is one line here, not a failure per queued item.
    targets = target_variants(settings, Registry.from_settings(settings), variants) if catalogues else []
    # The operator named these catalogues, so the server may read their photos from disk.
    settings.allowed_image_roots += photo_folders(item for items in listed.values() for item in items)

    def index_catalogues(rt: Runtime) -> None:
        for catalogue, items in listed.items():
            job_id = rt.ingest.submit(items, targets)
            click.echo(f"indexing {len(items)} items from {catalogue} in the background: GET /v1/jobs/{job_id}")
            threading.Thread(target=_show_progress, args=(rt, job_id, catalogue.name), daemon=True).start()

    uvicorn.run(create_app(settings, on_ready=index_catalogues), host=host, port=port, log_level="info")


@main.command()
@click.argument("catalogue", type=click.Path(exists=True, path_type=Path))
@click.option("--variant", "variants", multiple=True, help="variant to index into (default: all served); repeatable")
@click.option("--server", default=None, help="index through this running gateway (default: only if the store is busy)")
def index(catalogue: Path, variants: tuple[str, ...], server: str | None) -> None:
    """Index a catalogue: a folder of images, a CSV or a JSONL file. Re-running skips what is unchanged."""
    items = list(read_catalogue(catalogue))
    click.echo(f"{len(items)} items in {catalogue}")
    settings = _settings()
    settings.allowed_image_roots += photo_folders(items)  # the operator named this catalogue: its photos are readable
    _direct_or_via_gateway(
        settings,
        server,
        direct=lambda rt: _index_directly(rt, items, rt.index_variants(variants), "ingest"),
        via=lambda client: client.submit(items, variants),
        total=len(items),
    )


@main.command()
@click.option("--from", "source", required=True, help="variant whose collection holds the products")
@click.option("--to", "target", required=True, help="variant to embed them into")
@click.option("--server", default=None, help="run through this running gateway (default: only if the store is busy)")
def reindex(source: str, target: str, server: str | None) -> None:
    """Backfill: re-embed every product of one variant into another. Re-running skips what is done."""
    from indexer.backfill import stored_items

    def direct(rt: Runtime) -> None:
        targets = rt.index_variants([target])
        _index_directly(rt, list(stored_items(rt.store, source)), targets, "reindex")

    _direct_or_via_gateway(
        _settings(), server, direct=direct, via=lambda client: [client.reindex(source, target)], total=None
    )


@main.command(name="backfill-edges")
@click.option("--variant", "variants", multiple=True, help="variant to fill (repeatable; default: every served one)")
def backfill_edges_command(variants: tuple[str, ...]) -> None:
    """Give photos indexed without an edge map (older versions, STYLEFINDER_INDEX_EDGES off) their `edge` vector,
    so sketch queries find them. Works on the store directly: stop a gateway that owns an embedded store first."""
    from indexer.backfill import backfill_edges
    from services.apps.runtime import Runtime

    rt = Runtime.build(_settings())
    try:
        for variant in rt.index_variants(list(variants) or None):
            with tqdm(desc=variant, unit="photo") as bar:

                def show(done: int, total: int, bar: tqdm = bar) -> None:
                    bar.total, bar.n = total, done
                    bar.refresh()

                filled, skipped = backfill_edges(
                    rt.store, rt.media, rt.embedder, rt.registry[variant], rt.settings.index_batch_size, show
                )
            click.echo(f"{variant}: {filled} edge maps stored, {skipped} photos without an outline or a kept file")
    finally:
        rt.close()


@main.group()
def store() -> None:
    """The embedded store: its state, an HNSW build now, and moving it to a Qdrant server and back."""


@store.command(name="status")
def store_status() -> None:
    """Collections with their points, vectors and points still searched exactly (not yet in an HNSW graph)."""
    with _embedded_store() as engine:
        for name in engine.collections():
            sizes = ", ".join(f"{vector} {size}-d" for vector, size in engine.vector_sizes(name).items())
            click.echo(f"{name}: {engine.count(name)} points ({sizes}), {engine.unindexed(name)} not in an HNSW graph")


@store.command(name="index")
def store_index() -> None:
    """Build every collection's HNSW graph now (a child process builds; this waits for it)."""
    with _embedded_store() as engine:
        for name in engine.collections():
            build = engine.build_index(name)  # the one running, or a new one
            if build is not None:
                click.echo(f"{name}: building the HNSW graph of {engine.count(name)} points...")
                build.join()
            click.echo(f"{name}: {engine.unindexed(name)} points not in an HNSW graph")


@store.command(name="cluster")
@click.option("--variant", "variants", multiple=True, help="variant to cluster (repeatable; default: every one)")
@click.option("--vector", "vectors", multiple=True, type=click.Choice(["photo", "edge"]), default=("photo", "edge"))
def store_cluster(variants: tuple[str, ...], vectors: tuple[str, ...]) -> None:
    """Run Cluster-then-Retrieve's k-means now (retrieval=cluster otherwise clusters a gallery on its first
    query, and new inventory joins the nearest cluster as it arrives). Labelling every point moves it out of the
    embedded store's HNSW graph, so the graph is rebuilt afterwards (in a child process; this waits)."""
    from services.store import COLLECTION_PREFIX, VectorStore, collection_name

    opened = VectorStore.from_settings(_settings())
    try:
        names = list(variants) or [name.removeprefix(COLLECTION_PREFIX) for name in opened.collections()]
        for variant in names:
            for vector in vectors:
                click.echo(f"{variant} {vector}: {opened.cluster(variant, vector)} clusters")
            rebuild = getattr(opened.engine, "build_index", None)  # the embedded engine builds its own graphs
            build = rebuild(collection_name(variant)) if rebuild is not None else None
            if build is not None:
                build.join()
    finally:
        opened.close()


@store.command(name="export")
@click.argument("url")
@click.option("--api-key", default=None, help="the server's API key")
def store_export(url: str, api_key: str | None) -> None:
    """Copy every collection of the embedded store to the Qdrant server or cluster at URL."""
    from services.store import ClientEngine, copy_collections

    with _embedded_store() as engine:
        _report_copy(copy_collections(engine, _server(ClientEngine, url, api_key), _copy_progress))


@store.command(name="import")
@click.argument("url")
@click.option("--api-key", default=None, help="the server's API key")
def store_import(url: str, api_key: str | None) -> None:
    """Copy every StyleFinder collection of the Qdrant server at URL into the embedded store."""
    from services.store import ClientEngine, copy_collections

    with _embedded_store() as engine:
        _report_copy(copy_collections(_server(ClientEngine, url, api_key), engine, _copy_progress))


@contextmanager
def _embedded_store() -> Iterator[EdgeEngine]:
    """This data folder's embedded store (migrated first if an older version left one), owned while in use."""
    from services.store import VectorStore

    settings = _settings()
    settings.qdrant_url = None
    opened = VectorStore.from_settings(settings)
    try:
        yield opened.engine  # type: ignore[misc]
    finally:
        opened.close()


def _server(engine_class: Any, url: str, api_key: str | None) -> Any:
    """A Qdrant server that answers, or one line saying it did not."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    server = engine_class.server(url, api_key)
    try:
        server.collections()
    except (ResponseHandlingException, UnexpectedResponse) as error:  # unreachable, or refusing us
        raise ServiceUnavailable(f"no Qdrant server answers at {url}: {error}") from None
    return server


def _copy_progress(collection: str, points: int) -> None:
    click.echo(f"\r{collection}: {points} points", nl=False, err=True)


def _report_copy(copied: dict[str, int]) -> None:
    click.echo("", err=True)
    for name, points in copied.items():
        click.echo(f"{name}: {points} points copied")


@main.command()
def worker() -> None:
    """Run a Celery indexing worker process (distributed mode: set REDIS_URL, and QDRANT_URL for a server)."""
    from indexer.worker import run_worker_process
    from services.apps.runtime import worker_celery

    settings = _settings()
    if not settings.redis_url:
        raise click.UsageError("a worker process needs a broker: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    run_worker_process(worker_celery(settings), settings.worker_concurrency, embedded_store=not settings.qdrant_url)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True)
def embedder(host: str, port: int) -> None:
    """Run the HTTP embedding service (the GPU box); point gateway and workers at it with STYLEFINDER_EMBEDDER_URL."""
    import uvicorn

    from services.apps.embedding_service import create_app

    uvicorn.run(create_app(_settings()), host=host, port=port, log_level="info")


@main.command()
@click.option("--stage", type=click.IntRange(1, 3), required=True, help="1 zero-shot, 2 image tower, 3 joint")
@click.option("--preset", default="v3", show_default=True, help="trainer/presets/<name>.json")
@click.option(
    "--data",
    "sources",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="In-shop folder, catalogue CSV/folder, or folder of identities; repeatable",
)
@click.option("--variant", default="effl0-minilm", show_default=True, help="variant to start from")
@click.option("--name", default=None, help="name of the new variant (default: <variant>-stage<N>-<preset>)")
@click.option("--epochs", type=int, default=None, help="override the preset's epochs")
@click.option("--catalogue-limit", type=int, default=None, help="override the preset's catalogue rows (0 = all)")
@click.option(
    "--cached-views",
    type=click.IntRange(min=0),
    default=None,
    help="override the preset's cached views per photo (0 = fresh augmented views every step, for a GPU)",
)
@click.option(
    "--every-item",
    is_flag=True,
    help="hold no In-shop items out (unless the data has its own train split) and none for validation, for a "
    "variant to ship once the preset was chosen on a split run; the last epoch stands",
)
@click.option(
    "--ship",
    type=click.Path(path_type=Path),
    default=None,
    help="also write the tensors the run changed and its card here (services/models/alignments/<name>.pt)",
)
def train(
    stage: int,
    preset: str,
    sources: tuple[Path, ...],
    variant: str,
    name: str | None,
    epochs: int | None,
    catalogue_limit: int | None,
    cached_views: int | None,
    every_item: bool,
    ship: Path | None,
) -> None:
    """Fine-tune a variant (stages 2-3) or evaluate it zero-shot (stage 1); registers the result as a variant."""
    from trainer.config import load_preset
    from trainer.report import read_cards, results_table
    from trainer.run import run_stage

    config = load_preset(preset)
    if epochs is not None:
        config.epochs = epochs
    if catalogue_limit is not None:
        config.catalogue_limit = catalogue_limit or None
    if cached_views is not None:
        config.cached_views = cached_views
    if every_item:
        config.inshop_test_fraction = config.val_fraction = 0.0
    settings = _settings()
    card = run_stage(settings, variant, stage, config, list(sources), name, ship=ship)
    click.echo(f"\n{card.stage}, preset {card.preset}, {card.epochs} epochs, {card.wall_time_s:.0f} s")
    if (card.model_extra or {}).get("kept_start"):
        click.echo("no epoch beat the starting weights on validation: the run kept its start")
    _echo_summary(card)
    click.echo(f"\nEvery run so far ({settings.data_dir / 'runs'}; `stylefinder report` writes docs/results.md):")
    click.echo(results_table(read_cards(settings.data_dir / "runs")))


def _echo_summary(card: ModelCard) -> None:
    """A run's metrics: zero-shot, the linear-probe baseline (where the run fitted one) and the run itself."""
    from trainer.run import card_summary

    rows = card_summary(card)
    probe = any(baseline is not None for _, _, baseline, _ in rows)
    click.echo(f"{'metric':<22}{'zero-shot':>12}{'linear probe' if probe else '':>14}{'this run':>12}")
    for metric, before, baseline, after in rows:
        shown = _number(baseline) if probe else ""
        click.echo(f"{metric:<22}{_number(before):>12}{shown:>14}{_number(after):>12}")


@main.command(name="align-text")
@click.option(
    "--data",
    "sources",
    multiple=True,
    default=[Path("../shared/data/myntra")],
    show_default=True,
    type=click.Path(exists=True, path_type=Path),
    help="catalogue CSV (or folder holding one) whose attribute prompts the text learns; repeatable",
)
@click.option("--base", default="effl0-minilm-zeroshot", show_default=True, help="variant whose text is aligned")
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="alignment file to write (default: the one effl0-minilm ships)",
)
def align_text(sources: tuple[Path, ...], base: str, out: Path | None) -> None:
    """Fit a variant's text projection to its frozen image space (image embeddings, so indexed collections,
    unchanged) and write it, with its card and any tensors the base already carried, into the package. By
    default this redoes effl0-minilm's alignment; the README shows the default variant's."""
    from trainer.alignment import SHIPPED, train_text_alignment

    target = out or SHIPPED / "effl0-minilm-text.pt"
    card = train_text_alignment(_settings(), base, list(sources), target)
    best = getattr(card, "best_step", None)
    click.echo(f"wrote {target} and its card; step {best} kept (best on validation), {card.wall_time_s:.0f} s")
    _echo_summary(card)


@main.command(name="train-sketch")
@click.option(
    "--pairs", type=click.Path(exists=True, path_type=Path), required=True, help="sketch pairs: train/ and test/"
)
@click.option("--doodles", type=click.Path(exists=True, path_type=Path), default=None, help="Quick, Draw! .npy")
@click.option("--catalogue", type=click.Path(exists=True, path_type=Path), required=True, help="catalogue CSV/folder")
@click.option("--base", default="effl0-minilm", show_default=True, help="variant to start from")
@click.option("--epochs", type=int, default=None, help="override the stage's 30 epochs")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default: the packaged sketch alignment")
def train_sketch_command(
    pairs: Path, doodles: Path | None, catalogue: Path, base: str, epochs: int | None, out: Path | None
) -> None:
    """Train the sketch stage (trainer/sketch.py); write the tensors it changed and their card (by default
    where the shipped variant effl0-minilm-sketch loads them from)."""
    from dataclasses import replace

    from trainer.sketch import SHIPPED, SketchConfig, train_sketch

    config = SketchConfig() if epochs is None else replace(SketchConfig(), epochs=epochs)
    target = out or SHIPPED
    card = train_sketch(_settings(), base, pairs, doodles, catalogue, target, config)
    extra = card.model_extra or {}
    click.echo(f"wrote {target} and its card; best epoch {extra.get('best_epoch')}")
    for key, value in card.metrics.items():
        click.echo(f"  {key:<32} {_number(value):>8}   (zero-shot {_number(extra.get('zero_shot', {}).get(key))})")


@main.command()
@click.option("--out", default=Path("docs/results.md"), type=click.Path(path_type=Path), show_default=True)
@click.option(
    "--runs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="folder of run cards (default: $STYLEFINDER_DATA_DIR/runs, where stylefinder train writes them)",
)
def report(out: Path, runs: Path | None) -> None:
    """Regenerate the results table from the saved run cards, write it to OUT and print it."""
    from trainer.report import read_cards, results_table, write_report

    runs = runs or _settings().data_dir / "runs"
    click.echo(results_table(read_cards(runs)))
    click.echo(f"wrote {write_report(runs, out)}")


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "-")


@main.command(name="eval")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--variant", default=None, help="variant to evaluate (default: the default variant, first served)")
@click.option("--json", "as_json", is_flag=True, help="print only the JSON report")
@click.option("--limit", type=int, default=None, help="catalogue evaluation: use the first N products")
@click.option(
    "--held-out",
    is_flag=True,
    help="catalogue evaluation: only the products every training run leaves out (its held-out test share)",
)
@click.option(
    "--catalogue",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="sketch evaluation: also search the sketches against this catalogue (CSV or its folder)",
)
@click.option(
    "--relevant", default=None, help="with --catalogue: FIELD=VALUE of the catalogue rows the sketches depict"
)
def evaluate(
    data: Path,
    variant: str | None,
    as_json: bool,
    limit: int | None,
    catalogue: Path | None,
    relevant: str | None,
    held_out: bool,
) -> None:
    """Retrieval metrics: In-shop folder/partition file -> R@1/5/10, mAP; catalogue CSV -> P@10, mAP@10; sketch
    pairs (sketch/ and photo_edge/) -> acc@1/@10 direct and through clusters, and with --catalogue and
    --relevant, mAP@all and P@100 against the catalogue's edge maps and photos."""
    from services.evaluation import evaluate_variant, format_table

    if (catalogue is None) != (relevant is None) or (relevant is not None and "=" not in relevant):
        raise InvalidInput("give --catalogue and --relevant FIELD=VALUE together (e.g. masterCategory=Footwear)")
    wanted = tuple(relevant.split("=", 1)) if relevant else None
    settings = _settings()
    if variant is None:
        from services.apps.runtime import served_variants
        from services.models import Registry

        variant = served_variants(settings, Registry.from_settings(settings))[0]
    report = evaluate_variant(settings, variant, data, limit, not as_json, catalogue, wanted, held_out)
    if not as_json:
        click.echo(format_table(report))
    click.echo(json.dumps(report, indent=2))


def _show_progress(rt: Runtime, job_id: str, label: str) -> None:
    """A progress bar on the server's console for a catalogue it indexes in the background."""
    with tqdm(desc=label, unit="item") as bar:
        while True:
            status = rt.jobs.status(job_id)
            if status is None:
                return
            _show_counts(bar, status.model_dump())
            if status.state == "done":
                return
            time.sleep(1)


def _direct_or_via_gateway(
    settings: Settings, server: str | None, direct: Callable[[Runtime], None], via: Callable, total: int | None
) -> None:
    """Work on the store directly unless a running gateway owns it (embedded store) or --server is given; the
    gateway gets STYLEFINDER_API_KEY, or this machine's admin key file."""
    from services.apps.api_keys import local_admin_key
    from services.apps.gateway_client import GatewayClient
    from services.apps.runtime import Runtime
    from services.store import StoreLocked

    if server is None:
        try:
            rt = Runtime.build(settings)
        except StoreLocked:
            client = GatewayClient(settings.gateway_url, local_admin_key(settings))
            if not client.reachable():
                raise
            click.echo(f"the store is owned by the gateway at {settings.gateway_url}; sending the work there")
            server = settings.gateway_url
        else:
            try:
                direct(rt)
            finally:
                rt.close()
            return
    client = GatewayClient(server, local_admin_key(settings))
    job_ids = via(client)
    with tqdm(total=total, unit="item") as bar:
        reports = client.follow(job_ids, lambda totals: _show_counts(bar, totals))
    _report({key: sum(r[key] for r in reports) for key in COUNTS}, [f for r in reports for f in r["failures"]], None)


def _index_directly(rt: Runtime, items: Sequence[CatalogueItem], variants: list[str], kind: str) -> None:
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
            lambda counts: _show_counts(bar, counts),
            kind,
        )
    report = status.model_dump()
    _report(report, report["failures"], variants)


def _show_counts(bar: tqdm, counts: Mapping[str, Any]) -> None:
    bar.total = counts["total"]
    bar.n = sum(counts[key] for key in COUNTS)
    bar.set_postfix({key: counts[key] for key in COUNTS})
    bar.refresh()


def _report(counts: Mapping[str, Any], failures: Sequence[Mapping[str, Any]], variants: list[str] | None) -> None:
    """The same summary and failure lines whichever path did the work."""
    into = f" into {variants}" if variants else ""
    click.echo(f"{counts['indexed']} indexed, {counts['unchanged']} unchanged, {counts['failed']} failed{into}")
    for failure in failures[:50]:
        click.echo(f"  failed {failure['item_id']}: {failure['reason']}", err=True)
    if len(failures) > 50:
        click.echo(f"  ... and {len(failures) - 50} more", err=True)


if __name__ == "__main__":
    main()
