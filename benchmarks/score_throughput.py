"""`tfinetune score` throughput through the server and the scorer's peak RSS, on SST-2 train
with all-MiniLM-L6-v2, as a ratio to the in-process limit measured in the same run.

    flock /tmp/tfinetune-bench.lock .venv/bin/python benchmarks/score_throughput.py \
        ../shared/data/sst2

1. Builds (once; cached in benchmarks/.cache/) MiniLM fine-tuned for a few steps on SST-2 and
   exported with `export.export_model` (the model the serving benchmark uses).
2. Limit, in this process: the SavedModel's `serving_default` (tf.saved_model.load) on batches
   of 32 SST-2 train sentences (the first `--limit-rows` rows, cycled), before and after the
   scoring runs (the median is the reference).
3. Starts `tfinetune serve` on 127.0.0.1 (flags: `--server-flags`) and runs `tfinetune score`
   as a subprocess with `--label-column label`: on the first 8k rows of train (a temporary
   file outside the repository) without extra flags (the comparison), then with
   `--score-flags` (default `--sort-by-length`) on the first 8k rows and on the whole train
   file (67k rows). Throughput is the
   scorer's own rows/s ("Scored N rows in S s": from the first request to the last row
   written, without the CLI's start-up); peak RSS is the score process's `ru_maxrss` from
   `wait4`.
4. Prints the table, writes benchmarks/results/score_throughput-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm_sst2_model import MODEL_NAME
from minilm_sst2_model import exported_model
from minilm_sst2_model import sst2_file
from serve_latency import ServerProcess

logger = logging.getLogger("score_throughput")
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
_SUMMARY = re.compile(r"Scored (\d+) rows in ([\d.]+) s")


def limit_rows_per_second(function, texts: list[str], seconds: float,
                          batch_size: int = 32) -> float:
    """rows/s of `serving_default` on consecutive batches of `batch_size` texts."""
    import tensorflow as tf

    batches = [tf.constant(texts[i:i + batch_size])
               for i in range(0, len(texts) - batch_size + 1, batch_size)]
    for batch in batches[:3]:
        function(text=batch)
    rows, began, i = 0, time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        function(text=batches[i % len(batches)])
        rows += batch_size
        i += 1
    return rows / (time.perf_counter() - began)


def head(source: Path, rows: int, target: Path) -> Path:
    """The header and the first `rows` data lines of a TSV."""
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i > rows:
                break
            out.write(line)
    return target


def score(port: int, source: Path, output: Path, batch_size: int, concurrency: int,
          flags: list[str]) -> dict:
    """Runs `tfinetune score`; its rows, seconds, rows/s and peak RSS (MiB)."""
    command = [sys.executable, "-m", "tfinetune.cli.main", "score", str(source),
               "--server", f"127.0.0.1:{port}", "--model-name", MODEL_NAME,
               "--text-column", "sentence", "--label-column", "label", "-o", str(output),
               "--batch-size", str(batch_size), "--concurrency", str(concurrency),
               "--overwrite", *flags]  # each run replaces the previous run's output
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - began
        err.seek(0)
        stderr = err.read()
        out.seek(0)
        stdout = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"tfinetune score failed ({process.returncode}):\n{stderr}")
    match = _SUMMARY.search(stderr)
    rows, seconds = int(match.group(1)), float(match.group(2))
    accuracy = re.search(r"accuracy\s*[:=]?\s*([\d.]+)", stdout, re.IGNORECASE)
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds,
            "wall_seconds_with_startup": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "accuracy": float(accuracy.group(1)) if accuracy else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="SST-2 directory (train.tsv, dev.tsv)")
    parser.add_argument("--sizes", default="8000,all",
                        help="comma list of row counts of train to score ('all': the file)")
    parser.add_argument("--batch-size", type=int, default=64, help="score --batch-size")
    parser.add_argument("--concurrency", type=int, default=4, help="score --concurrency")
    parser.add_argument("--score-flags", default="--sort-by-length",
                        help="extra `tfinetune score` flags of the measured runs")
    parser.add_argument("--compare-rows", type=int, default=8000,
                        help="also score this many rows without --score-flags (0: skip)")
    parser.add_argument("--server-flags", default="",
                        help="extra `tfinetune serve` flags, e.g. '--enable_batching=true'")
    parser.add_argument("--limit-rows", type=int, default=4096)
    parser.add_argument("--in-process-seconds", type=float, default=15.0)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    from tfinetune import _environment  # noqa: F401

    base = exported_model(args.data, args.max_length)
    from export.exporter import existing_versions

    versions = existing_versions(base)
    version_dir = versions[max(versions)]
    train = sst2_file(args.data, "train")
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from tfinetune.table_reader import TableReader

    texts = []
    for row in TableReader(train):
        texts.append(row.values["sentence"])
        if len(texts) >= args.limit_rows:
            break
    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    limits = []
    runs = []
    with tempfile.TemporaryDirectory(prefix="score-throughput-") as tmp:
        work = Path(tmp)
        command = [sys.executable, "-m", "tfinetune.cli.main", "serve",
                   f"--model_name={MODEL_NAME}", f"--model_base_path={base}", "--port={port}",
                   "--file_system_poll_wait_seconds=0", *args.server_flags.split()]
        server = ServerProcess("tfinetune serve", command, work / "server.log")
        try:
            server.wait_ready()
            logger.info("In-process limit (before) ...")
            limits.append(limit_rows_per_second(function, texts, args.in_process_seconds))
            plan = [(size, args.score_flags.split()) for size in args.sizes.split(",")]
            if args.compare_rows:
                plan.insert(0, (str(args.compare_rows), []))  # without --score-flags
            for size, flags in plan:
                source = train if size == "all" else head(train, int(size),
                                                         work / f"train-{size}.tsv")
                logger.info("Scoring %s %s ...", source, " ".join(flags))
                runs.append({"input_rows": size, "score_flags": " ".join(flags), **score(
                    server.port, source, work / "scored.tsv", args.batch_size,
                    args.concurrency, flags)})
                logger.info("  %s", runs[-1])
            logger.info("In-process limit (after) ...")
            limits.append(limit_rows_per_second(function, texts, args.in_process_seconds))
        finally:
            server.stop()
    limit = statistics.median(limits)
    for run in runs:
        run["ratio_to_limit"] = run["rows_per_second"] / limit

    import grpc

    result = {
        "benchmark": "score_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "versions": {"tensorflow": tf.__version__, "grpcio": grpc.__version__},
        "settings": {k: str(v) for k, v in vars(args).items()},
        "in_process_limit_rows_per_second": limits,
        "runs": runs,
        "targets": {"rows_per_second_vs_limit": ">= 0.8", "peak_rss": "flat in the file size"},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"score_throughput-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"In-process limit (batch 32, SST-2 train): {limit:.1f} rows/s "
          f"(each measurement: {', '.join(f'{x:.1f}' for x in limits)})")
    print("| rows | score flags | seconds | rows/s | ×limit | peak RSS MiB | accuracy |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for run in runs:
        print(f"| {run['rows']} | {run['score_flags'] or '(none)'} | {run['seconds']:.1f} | "
              f"{run['rows_per_second']:.1f} | {run['ratio_to_limit']:.2f} | "
              f"{run['peak_rss_mib']:.0f} | {run['accuracy']} |")
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
