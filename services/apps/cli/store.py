"""`stylefinder store ...`: the embedded store's state, an HNSW build now, clusters, snapshots and their restore,
moving it to a server and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from services.apps.cli.common import here_or_at_gateway
from services.apps.cli.common import settings as _settings
from services.errors import InvalidInput, ServiceUnavailable

if TYPE_CHECKING:
    from services.store import VectorStore


@click.group()
def store() -> None:
    """The embedded store: its state, an HNSW build now, and moving it to a Qdrant server and back."""


@store.command(name="status")
def store_status() -> None:
    """Collections with their points, vectors and points still searched exactly (not yet in an HNSW graph); asked of
    the running gateway when it owns the embedded store."""
    from dataclasses import asdict

    settings = _settings()
    nothing_here = settings.qdrant_url is None and not any(
        path.exists() for path in (settings.store_path, settings.legacy_store_path)
    )  # asked, not started: no data folder made for it
    states = (
        []
        if nothing_here
        else here_or_at_gateway(
            settings, lambda rt: [asdict(state) for state in rt.store.states()], lambda client: client.store_states()
        )
    )
    if not states:
        click.echo("no collections yet: nothing is indexed here (stylefinder index <catalogue>)")
    for state in states:
        sizes = ", ".join(f"{vector} {size}-d" for vector, size in state["vectors"].items())
        graph = "built by the server" if state["unindexed"] is None else f"{state['unindexed']} not in an HNSW graph"
        click.echo(f"{state['name']}: {state['points']} points ({sizes}), {graph}")


@store.command(name="index")
def store_index() -> None:
    """Build every collection's HNSW graph now (a child process builds; this waits for it)."""
    with _embedded_store() as opened:
        for state in opened.states():
            build = opened.build_graph(state.name)  # the one running, or a new one
            if build is not None:
                click.echo(f"{state.name}: building the HNSW graph of {state.points} points...")
                build.join()
        for state in opened.states():
            click.echo(f"{state.name}: {state.unindexed} points not in an HNSW graph")


@store.command(name="cluster")
@click.option("--variant", "variants", multiple=True, help="variant to cluster (repeatable; default: every one)")
@click.option("--vector", "vectors", multiple=True, type=click.Choice(["photo", "edge"]), default=("photo", "edge"))
def store_cluster(variants: tuple[str, ...], vectors: tuple[str, ...]) -> None:
    """Run Cluster-then-Retrieve's k-means now (retrieval=cluster otherwise clusters a gallery on its first
    query, and new inventory joins the nearest cluster as it arrives). Labelling every point moves it out of the
    embedded store's HNSW graph, so the graph is rebuilt afterwards (in a child process; this waits). `edge` is
    each variant's edge vector (named after its sketch tower where one is laid over it)."""
    from services.models import Registry
    from services.store import COLLECTION_PREFIX, VectorStore, collection_name

    settings = _settings()
    registry = Registry.from_settings(settings)
    opened = VectorStore.from_settings(settings)
    try:
        names = list(variants) or [name.removeprefix(COLLECTION_PREFIX) for name in opened.collections()]
        empty = [variant for variant in names if not opened.count(variant)]
        if variants and empty:  # named: a typo, or a variant not indexed yet
            raise InvalidInput(f"variant {', '.join(empty)} holds no products here: nothing to cluster")
        for variant in names:
            known = variant in registry.names()
            for vector in vectors:
                using = registry[variant].edge_vector if vector == "edge" and known else vector
                click.echo(f"{variant} {using}: {opened.cluster(variant, using)} clusters")
            build = opened.build_graph(collection_name(variant))
            if build is not None:
                build.join()
    finally:
        opened.close()


@store.command(name="snapshot")
@click.argument("target", type=click.Path(path_type=Path))
def store_snapshot(target: Path) -> None:
    """Snapshot the data folder (store, photos, jobs, keys, trained variants) into TARGET, a new folder; through
    the running gateway when it owns the embedded store (TARGET is then a path on its machine). A Qdrant server's
    collections are exported through its API into TARGET, in the embedded store's format."""
    from services.apps.backup import snapshot

    target = target.resolve()
    manifest = here_or_at_gateway(
        _settings(), lambda rt: snapshot(rt, target), lambda client: client.snapshot(str(target))
    )
    points = ", ".join(f"{name} {count}" for name, count in manifest["points"].items()) or "no collection"
    click.echo(f"snapshot in {target}: {points} points")


@store.command(name="restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
def store_restore(source: Path) -> None:
    """Restore a snapshot into STYLEFINDER_DATA_DIR, which must be empty, its collections into the Qdrant server
    QDRANT_URL names when set (which must hold none of ours); start `serve` on it afterwards."""
    from services.apps.backup import restore

    settings = _settings()
    manifest = restore(source, settings)
    click.echo(f"restored {source} into {settings.data_dir}: {sum(manifest['points'].values())} points")


@store.command(name="export")
@click.argument("url")
@click.option("--api-key", default=None, help="the server's API key")
def store_export(url: str, api_key: str | None) -> None:
    """Copy every collection of the embedded store to the Qdrant server or cluster at URL."""
    from services.store import ClientEngine, copy_collections

    with _embedded_store() as opened:
        _report_copy(copy_collections(opened.engine, _server(ClientEngine, url, api_key), _copy_progress))


@store.command(name="import")
@click.argument("url")
@click.option("--api-key", default=None, help="the server's API key")
def store_import(url: str, api_key: str | None) -> None:
    """Copy every StyleFinder collection of the Qdrant server at URL into the embedded store."""
    from services.store import ClientEngine, copy_collections

    with _embedded_store() as opened:
        _report_copy(copy_collections(_server(ClientEngine, url, api_key), opened.engine, _copy_progress))


@contextmanager
def _embedded_store() -> Iterator[VectorStore]:
    """This data folder's embedded store (migrated first if an older version left one), owned while in use."""
    from services.store import VectorStore

    settings = _settings()
    settings.qdrant_url = None
    opened = VectorStore.from_settings(settings)
    try:
        yield opened
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
