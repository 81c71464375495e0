"""`stylefinder index`, `reindex`, `backfill-edges`: catalogue work, here or through the gateway that owns the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from services.apps.cli.common import direct_or_via_gateway, index_directly
from services.apps.cli.common import settings as _settings
from services.catalogue import photo_folders, read_catalogue

if TYPE_CHECKING:
    from services.apps.runtime import Runtime


@click.command()
@click.argument("catalogue", type=click.Path(exists=True, path_type=Path))
@click.option("--variant", "variants", multiple=True, help="variant to index into (default: all served); repeatable")
@click.option("--server", default=None, help="index through this running gateway (default: only if the store is busy)")
def index(catalogue: Path, variants: tuple[str, ...], server: str | None) -> None:
    """Index a catalogue: a folder of images, a CSV or a JSONL file. Re-running skips what is unchanged."""
    items = list(read_catalogue(catalogue))
    click.echo(f"{len(items)} items in {catalogue}")
    settings = _settings()
    settings.allowed_image_roots += photo_folders(items)  # the operator named this catalogue: its photos are readable
    direct_or_via_gateway(
        settings,
        server,
        direct=lambda rt: index_directly(rt, items, rt.index_variants(variants), "ingest"),
        via=lambda client: client.submit(items, variants),
        total=len(items),
    )


@click.command()
@click.option("--from", "source", required=True, help="variant whose collection holds the products")
@click.option("--to", "target", required=True, help="variant to embed them into")
@click.option("--server", default=None, help="run through this running gateway (default: only if the store is busy)")
def reindex(source: str, target: str, server: str | None) -> None:
    """Backfill: re-embed every product of one variant into another. Re-running skips what is done."""

    def direct(rt: Runtime) -> None:
        index_directly(rt, *rt.reindexed(source, target), "reindex")

    direct_or_via_gateway(
        _settings(), server, direct=direct, via=lambda client: [client.reindex(source, target)], total=None
    )


@click.command(name="backfill-edges")
@click.option("--variant", "variants", multiple=True, help="variant to fill (repeatable; default: every served one)")
def backfill_edges_command(variants: tuple[str, ...]) -> None:
    """Give photos indexed without an edge map (older versions, STYLEFINDER_INDEX_EDGES off) their edge vector,
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
