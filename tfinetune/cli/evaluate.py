"""`tfinetune evaluate`: every metric of a fine-tuned run on a labelled file, in-process."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from tfinetune.cli.quiet_import import import_tensorflow_quietly
from tfinetune.errors import TfinetuneError


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Options of `tfinetune evaluate` (columns default to the run's own)."""

    run_dir: Path
    data: Path
    batch_size: int = 64
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    as_json: bool = False


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Labelled .csv, .tsv, .jsonl or .parquet file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--text-column", help="Text column. [default: the run's]")
@click.option("--text-pair-column", help="Second text column. [default: the run's]")
@click.option("--label-column", help="Label column. [default: the run's]")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def command(**options) -> None:
    """Print every metric of a fine-tuned run on a labelled file (no server needed).

    \b
    tfinetune evaluate runs/sentiment --data test.csv
    tfinetune evaluate runs/sentiment --data test.parquet --json > metrics.json
    """
    config = EvaluateConfig(**options)
    try:
        import_tensorflow_quietly()
        from tfinetune.run_evaluation import RunEvaluation

        result = RunEvaluation.compute(
            config.run_dir, config.data, batch_size=config.batch_size,
            text_column=config.text_column, text_pair_column=config.text_pair_column,
            label_column=config.label_column)
    except TfinetuneError as error:
        raise click.ClickException(str(error)) from error
    if config.as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(f"Run: {result.run_dir}\nData: {result.data}\nLoss: {result.loss:.4f}")
        click.echo(result.metrics.format_text())
