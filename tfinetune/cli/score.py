"""`tfinetune score`: score a data file in bulk through a running model server."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

import click

from tfinetune.cli.quiet_import import import_tensorflow_quietly
from tfinetune.cli.server_option import server_option
from tfinetune.cli.tls_options import TlsOptions
from tfinetune.cli.tls_options import tls_options
from tfinetune.cli.tokenizer_option import load_client_tokenizer
from tfinetune.cli.tokenizer_option import tokenizer_option
from tfinetune.batch_scorer import ERROR_COLUMN
from tfinetune.batch_scorer import BatchScorer
from tfinetune.errors import ConfigError
from tfinetune.errors import TfinetuneError
from tfinetune.score_config import ScoreConfig
from tfinetune.score_result import ScoreResult

logger = logging.getLogger(__name__)


@click.command("score", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@server_option
@click.option("--model-name", required=True, metavar="NAME", help="Model name on the server.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="OUT",
              help="Output file: .csv, .tsv, .jsonl or .parquet (by extension).")
@click.option("--text-column", help="Input text column. [default: text; question-answering "
                                     "models: question]")
@click.option("--text-pair-column", help="Second text column, for sentence-pair models "
                                         "(question-answering models: the context column, "
                                         "default context).")
@click.option("--label-column",
              help="Column of true labels (regression: true values): print the metrics at the "
                   "end (accuracy, precision, recall, F1 and the confusion matrix; multi-label: "
                   "subset accuracy and micro/macro P/R/F1; regression: MSE, RMSE, MAE, "
                   "Pearson, Spearman; question answering: exact match and F1 against the "
                   "answer(s) in the column; seq2seq: BLEU and ROUGE against the reference "
                   "text).")
@click.option("--label-delimiter", default=",", show_default=True,
              help="Multi-label models: separator of label names in one cell, for the true "
                   "labels (as fit's --label-delimiter) and the written `labels` column "
                   "(CSV/TSV/Parquet; JSON Lines gets a list).")
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Rows per Predict request.")
@click.option("--concurrency", type=int, default=4, show_default=True,
              help="Requests in flight at once.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds per request attempt.")
@click.option("--retries", type=int, default=3, show_default=True,
              help="Retries of a request that failed with a transient error (UNAVAILABLE, "
                   "DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED), with exponential "
                   "backoff.")
@click.option("--signature-name", default="serving_default", show_default=True,
              help="Signature of the model to call.")
@click.option("--model-version", type=int, help="Model version to use. [default: latest]")
@click.option("--sort-by-length", is_flag=True,
              help="Send each concurrency x batch-size rows as requests of rows of similar "
                   "text length (less padding: faster on texts of mixed lengths); the output "
                   "keeps input order.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run into the same OUT: the rows already in "
                   "OUT.partial are checked against INPUT, kept and not sent again.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing OUT (or OUT.partial of an interrupted run); without "
                   "it (or --resume) an existing one is refused.")
@click.option("--metrics-json", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the metrics as JSON (needs --label-column).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr.")
@tls_options
@tokenizer_option
def command(input_file, output, metrics_json, quiet, **options) -> None:
    """Score INPUT (CSV, TSV, JSON Lines or Parquet) through a model server into OUT.

    Streams INPUT in batches, with several requests in flight, and writes every input row, in
    input order, with all its columns plus `label` (or `predicted_label` when INPUT already
    has a `label` column), one `prob_<label>` column per label, and `error`. Multi-label
    models give `labels` (the predicted names joined with --label-delimiter; a list in JSON
    Lines) and one `score_<label>` column per label instead; regression models give `value`
    (a clash adds `predicted_` as for `label`). NER models give `entities` (a JSON list of
    {type, start, end, text, score}); question-answering models (question and context
    columns) give `answer`, `answer_start`, `answer_end` (character offsets into the context)
    and `answer_score`; seq2seq models give `generated_text`. A row whose
    request fails after retries is written with `error` set ("CODE: message") and no
    prediction; in CSV/TSV `error` is empty for scored rows, in JSON Lines the key is present
    only on failed rows. Transient errors are retried with backoff first (on another
    replica at once, with several --server).

    OUT appears only once complete; until then rows go to OUT.partial (in input order). If
    the run is interrupted (killed, Ctrl-C, or the server stays unavailable: the run stops
    rather than failing every row), the same command with --resume keeps the rows in
    OUT.partial and scores only the rest: the finished OUT has every input row once, in
    input order.

    Exits with status 1 when any row failed or the run stopped.

    \b
    tfinetune score reviews.csv --server localhost:8500 --model-name sentiment \\
        --output scored.csv --label-column label --metrics-json metrics.json
    tfinetune score reviews.csv --server 10.0.0.1:8500 --server 10.0.0.2:8500 \\
        --model-name sentiment --output scored.csv
    """
    tls = TlsOptions.pop_from(options)
    try:
        config = ScoreConfig(input=Path(input_file), output=Path(output), **options)
        if metrics_json and config.label_column is None:
            raise ConfigError("--metrics-json needs --label-column (the column of true labels).")
        scorer = BatchScorer(config)  # checks INPUT and its columns before contacting the server
    except TfinetuneError as error:
        raise click.ClickException(str(error)) from error

    import_tensorflow_quietly()
    from serving.serving_error import ServingError

    try:
        with _make_client(config, tls) as client, _progress_bar(scorer.total_rows, quiet) as bar:
            result = scorer.score(client, progress=bar.update)
    except (TfinetuneError, ServingError) as error:
        raise click.ClickException(str(error)) from error

    if not quiet:
        click.echo(_summary(result), err=True)
    if config.label_column is not None:
        click.echo(_metrics_report(result))
        if metrics_json:
            _write_json(Path(metrics_json), result.metrics_dict())
    if result.failed:
        raise click.ClickException(
            f"{result.failed} of {result.rows} rows failed; they are in {result.output} with "
            f"the {ERROR_COLUMN!r} column set. First error: {result.first_error}"
        )


def _make_client(config: ScoreConfig, tls: TlsOptions = TlsOptions()):
    """The gRPC client of the model server (imported here: serving imports TensorFlow); with
    `config.tokenizer` it tokenises for `--portable` models."""
    from serving.client import TRANSIENT_CODES
    from serving.client import Client

    return Client(
        config.servers,
        config.model_name,
        signature_name=config.signature_name,
        version=config.model_version,
        timeout=config.timeout,
        retries=config.retries,
        retry_codes=TRANSIENT_CODES,
        tokenizer=load_client_tokenizer(config.tokenizer, config.pad_to_max_length),
        **tls.client_arguments(),
    )


@contextlib.contextmanager
def _progress_bar(total: int | None, quiet: bool):
    from tqdm import tqdm

    disable = quiet or not _is_terminal(sys.stderr)
    with tqdm(total=total, desc="Scoring", unit=" rows", file=sys.stderr, disable=disable,
              dynamic_ncols=True, smoothing=0.1) as bar:
        yield bar


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _summary(result: ScoreResult) -> str:
    resumed = (f" ({result.resumed} of them kept from the interrupted run, not sent again)"
               if result.resumed else "")
    return (
        f"Scored {result.rows} rows in {result.seconds:.1f} s "
        f"({result.rows_per_second:.0f} rows/s): {result.rows - result.failed} ok, "
        f"{result.failed} failed{resumed}. Output: {result.output}"
    )


def _metrics_report(result: ScoreResult) -> str:
    excluded = []
    if result.excluded_failed:
        excluded.append(f"{result.excluded_failed} failed")
    if result.excluded_unknown_label:
        examples = ", ".join(result.unknown_label_examples)
        if result.problem_type == "regression":
            excluded.append(f"{result.excluded_unknown_label} with a missing or non-numeric "
                            f"target (e.g. {examples})")
        else:
            excluded.append(
                f"{result.excluded_unknown_label} with "
                + ("a missing label cell or a label" if result.problem_type == "multi-label"
                   else "an empty label or one")
                + f" the model does not know (e.g. {examples}; model labels: {result.labels})"
            )
    excluded_text = f"; excluded: {', '.join(excluded)}" if excluded else ""
    if result.metrics is None:
        return (
            f"No metrics: no row has both a prediction and a known label in column "
            f"{result.label_column!r}{excluded_text}."
        )
    return (
        f"Metrics against column {result.label_column!r} "
        f"({result.evaluated} of {result.rows} rows{excluded_text}):\n\n"
        + result.metrics.format_text()
    )


def _write_json(path: Path, data: dict) -> None:
    try:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise click.ClickException(
            f"Cannot write the metrics to {path}: {error.strerror or error}") from error
