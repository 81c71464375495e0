"""`stylefinder`: thin commands over the library and the workers, one module per concern."""

from __future__ import annotations

import logging

import click
from pydantic import ValidationError

from services.apps.cli.catalogue import backfill_edges_command, index, reindex
from services.apps.cli.evaluation import evaluate
from services.apps.cli.serving import embedder, serve, switch, worker, worker_alive
from services.apps.cli.store import store
from services.apps.cli.training import (
    align_text,
    report,
    train,
    train_kind_guess_command,
    train_sketch_command,
    train_wearing_command,
)
from services.errors import StyleFinderError
from services.settings import Settings
from services.telemetry import configure_logging


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
    try:
        json_lines = Settings().log_format == "json"
    except ValidationError:
        json_lines = True  # the command reads its settings next and says which one is wrong
    configure_logging(json_lines, logging.INFO if verbose else logging.WARNING)


for command in (
    serve,
    switch,
    worker,
    worker_alive,
    embedder,
    index,
    reindex,
    backfill_edges_command,
    store,
    train,
    align_text,
    train_sketch_command,
    train_wearing_command,
    train_kind_guess_command,
    report,
    evaluate,
):
    main.add_command(command)
