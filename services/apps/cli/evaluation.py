"""`stylefinder eval`: a variant's retrieval quality on a dataset, through the API's search function."""

from __future__ import annotations

import json
from pathlib import Path

import click

from services.apps.cli.common import here_or_at_gateway
from services.apps.cli.common import settings as _settings
from services.errors import InvalidInput


@click.command(name="eval")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--variant", default=None, help="variant to evaluate (default: what searches naming none get, after any switch)"
)
@click.option("--json", "as_json", is_flag=True, help="print only the JSON report")
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="catalogue evaluation: use the first N products"
)
@click.option(
    "--held-out",
    is_flag=True,
    help="only the catalogue products every training run leaves out (its held-out test share)",
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
    if variant is None:  # what a search naming no variant is served by, `stylefinder switch` included
        from services.apps.runtime import DEFAULT_NAME

        variant = here_or_at_gateway(
            settings, lambda rt: rt.default_variant, lambda client: client.served_names()[DEFAULT_NAME]
        )
    report = evaluate_variant(settings, variant, data, limit, not as_json, catalogue, wanted, held_out)
    if not as_json:
        click.echo(format_table(report))
    click.echo(json.dumps(report, indent=2))
