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
    """Print every metric of a fine-tuned run on a labelled file (no server needed): the
    classifier's, entity P/R/F1 per type for NER, exact match and F1 for question answering,
    BLEU and ROUGE for seq2seq. The file has the format of the run's training data.

    \b
    tfinetune evaluate runs/sentiment --data test.csv
    tfinetune evaluate runs/sentiment --data test.parquet --json > metrics.json
    """
    config = EvaluateConfig(**options)
    task = _run_task(config.run_dir)
    if task != "text-classification":
        _evaluate_task(config, task)
        return
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


def _run_task(run_dir: Path) -> str:
    """The run's task from its fit_config.yaml (text-classification when it cannot be read:
    the classification path then reports what is wrong with the directory)."""
    from tfinetune.fit_config import FitConfig

    try:
        return FitConfig.load(run_dir / "fit_config.yaml").task
    except (TfinetuneError, OSError, TypeError):
        return "text-classification"


def _evaluate_task(config: EvaluateConfig, task: str) -> None:
    """`evaluate` for the tasks other than text classification: their `evaluate_run` dict."""
    given = [f"--{name.replace('_', '-')}" for name in
             ("text_column", "text_pair_column", "label_column") if getattr(config, name)]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} apply to text classification; this run is {task} (its columns "
            "come from its fit_config.yaml).")
    try:
        import_tensorflow_quietly()
        from tfinetune.fit_config import FitConfig
        from tfinetune.tasks import task_class

        fit_config = FitConfig.load(config.run_dir / "fit_config.yaml")
        metrics = task_class(task).evaluate_run(config.run_dir, fit_config, config.data,
                                                batch_size=config.batch_size)
    except TfinetuneError as error:
        raise click.ClickException(str(error)) from error
    result = {"run_dir": str(config.run_dir), "data": str(config.data), "task": task, **metrics}
    if config.as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"Run: {config.run_dir} ({task})\nData: {config.data}")
    for name, value in metrics.items():
        if isinstance(value, float):
            click.echo(f"{name}: {value:.4f}")
        elif isinstance(value, dict):
            click.echo(f"{name}:")
            for key, item in value.items():
                shown = (", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in item.items()) if isinstance(item, dict)
                         else (f"{item:.4f}" if isinstance(item, float) else item))
                click.echo(f"  {key}: {shown}")
        else:
            click.echo(f"{name}: {value}")
