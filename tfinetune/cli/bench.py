"""`tfinetune bench`: benchmarks. `bench serve` is a load generator for any
TF-Serving-compatible gRPC server (tfinetune's own or stock `tensorflow_model_server`)."""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
from pathlib import Path

import click

from tfinetune.bench_serve_config import BenchServeConfig
from tfinetune.bench_serve_config import parse_concurrency
from tfinetune.errors import TfinetuneError
from tfinetune.load_level_result import LoadLevelResult
from tfinetune.score_config import DEFAULT_SERVER


@click.group("bench", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Benchmarks (the table goes to stdout, progress to stderr)."""


def _concurrency(ctx, param, value: str) -> tuple[int, ...]:
    try:
        return parse_concurrency(value)
    except TfinetuneError as error:
        raise click.BadParameter(str(error)) from None


@command.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", default=DEFAULT_SERVER, show_default=True, metavar="HOST:PORT",
              help="gRPC address of the model server.")
@click.option("--model-name", required=True, metavar="NAME", help="Model name on the server.")
@click.option("--data", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="CSV/TSV/JSONL/Parquet file whose rows are sent.")
@click.option("--text-column", default="text", show_default=True,
              help="Column of FILE holding the texts.")
@click.option("--concurrency", default="1,4,16,32", show_default=True, callback=_concurrency,
              help="Comma-separated requests in flight, one level after another.")
@click.option("--rows-per-request", type=click.IntRange(min=1), default=1, show_default=True,
              help="Texts per Predict request.")
@click.option("--warmup-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Unmeasured load before each level.")
@click.option("--duration-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Measured time per level.")
@click.option("--requests", type=click.IntRange(min=1),
              help="Measure this many requests per level instead of --duration-seconds.")
@click.option("--max-rows", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Rows read from FILE (cycled through).")
@click.option("--input-name", default="text", show_default=True,
              help="Signature input that receives the texts.")
@click.option("--signature-name", default="serving_default", show_default=True)
@click.option("--model-version", type=int, help="Version to call. [default: latest]")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds per request.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the results (settings, machine, every level) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write one CSV row per level.")
def serve(json_path, csv_path, **options) -> None:
    """Closed-loop Predict load at each concurrency level: rows/s and latency percentiles.

    \b
    tfinetune bench serve --server localhost:8500 --model-name sst2 \\
        --data dev.tsv --text-column sentence --concurrency 1,4,16,32 --json bench.json
    """
    from tfinetune.load_generator import LoadGenerator

    try:
        config = BenchServeConfig(**options)
        generator = LoadGenerator(config)
        results = generator.run(progress=lambda line: click.echo(line, err=True))
    except TfinetuneError as error:
        raise click.ClickException(str(error)) from error
    click.echo(format_table(results))
    if json_path:
        Path(json_path).write_text(json.dumps(report(config, results), indent=2) + "\n",
                                   encoding="utf-8")
    if csv_path:
        rows = [result.flat() for result in results]
        with open(csv_path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    failed = [result for result in results if result.requests == 0]
    if failed:
        raise click.ClickException(
            f"No request succeeded at concurrency {failed[0].concurrency}: "
            f"{failed[0].first_error}")


def format_table(results: list[LoadLevelResult]) -> str:
    """The results as a fixed-width table, one line per level."""
    header = (f"{'concurrency':>11} {'requests':>9} {'rows/s':>9} {'p50 ms':>9} {'p95 ms':>9} "
              f"{'p99 ms':>9} {'errors':>7} {'client CPU':>10}")
    lines = [header]
    for r in results:
        cells = [_fmt(r.latency_ms[k]) for k in ("p50", "p95", "p99")]
        lines.append(f"{r.concurrency:>11} {r.requests:>9} {r.rows_per_second:>9.1f} "
                     f"{cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {r.errors:>7} "
                     f"{_percent(r.client_cpu):>10}")
    return "\n".join(lines)


def report(config: BenchServeConfig, results: list[LoadLevelResult]) -> dict:
    """The JSON document of a run: settings, machine, versions and every level."""
    import grpc

    return {
        "tool": "tfinetune bench serve",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {**config.__dict__, "concurrency": list(config.concurrency)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "versions": {"grpcio": grpc.__version__},
        "levels": [result.to_dict() for result in results],
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
