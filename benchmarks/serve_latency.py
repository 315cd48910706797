"""Serving throughput and latency of `tfinetune serve` on all-MiniLM-L6-v2 / SST-2, as ratios
to two same-run references: the in-process limit and a plain per-request gRPC server.

    flock /tmp/tfinetune-bench.lock .venv/bin/python benchmarks/serve_latency.py ../shared/data/sst2

1. Builds (once; cached in benchmarks/.cache/) MiniLM fine-tuned for a few steps on SST-2 and
   exported with `export.export_model`.
2. Limit, in this process: the SavedModel's `serving_default` (tf.saved_model.load) called on
   batches of 32 SST-2 dev texts (rows/s) and on single texts (latency), at the start of every
   round and once after the last (the median is the reference; all are reported).
3. Starts, on 127.0.0.1, the plain baseline (`benchmarks/plain_predict_server.py`: one
   session.run per request) and `tfinetune serve --enable_batching` (and, with
   `--servers ...,unbatched`, `tfinetune serve` without batching), and measures each with
   `tfinetune bench serve` (one-row raw-text requests, closed loop, concurrency 1,4,16,32,64).
   Rounds (`--rounds`, default 2) repeat the limit and every server, in alternating order; the
   table shows medians over rounds.
4. Prints the table and the target checks, writes benchmarks/results/serve_latency-<date>.json.

Everything runs on the same machine at the same time as the load generator: on 2 CPUs the
client's own work is part of what is measured (see RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import socket
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

logger = logging.getLogger("serve_latency")
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dev_texts(data: Path) -> list[str]:
    from tfinetune.table_reader import TableReader

    return [row.values["sentence"] for row in TableReader(sst2_file(data, "dev"))]


def in_process_limit(function, texts: list[str], seconds: float, batch_size: int = 32) -> dict:
    """rows/s of `serving_default` on batches of `batch_size`, and single-text latency (ms)."""
    import numpy as np
    import tensorflow as tf

    batches = [tf.constant(texts[i:i + batch_size])
               for i in range(0, len(texts) - batch_size + 1, batch_size)]
    singles = [tf.constant([text]) for text in texts]
    for batch in batches[:3]:
        function(text=batch)
    for single in singles[:20]:
        function(text=single)
    rows, began, i = 0, time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        function(text=batches[i % len(batches)])
        rows += batch_size
        i += 1
    batched = rows / (time.perf_counter() - began)
    # Informational: the same texts in batches of similar length (what padding costs).
    by_length = sorted(texts, key=len)
    sorted_batches = [tf.constant(by_length[i:i + batch_size])
                      for i in range(0, len(texts) - batch_size + 1, batch_size)]
    rows, began, i = 0, time.perf_counter(), 0
    while time.perf_counter() - began < seconds / 2:
        function(text=sorted_batches[i % len(sorted_batches)])
        rows += batch_size
        i += 1
    length_sorted = rows / (time.perf_counter() - began)
    latencies, began, i = [], time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        start = time.perf_counter()
        function(text=singles[i % len(singles)])
        latencies.append(time.perf_counter() - start)
        i += 1
    ms = np.asarray(latencies) * 1e3
    return {"batched_rows_per_second": batched, "batch_size": batch_size,
            "length_sorted_batched_rows_per_second": length_sorted,
            "single_p50_ms": float(np.percentile(ms, 50)),
            "single_p95_ms": float(np.percentile(ms, 95)),
            "single_p99_ms": float(np.percentile(ms, 99)),
            "single_rows_per_second": len(latencies) / (time.perf_counter() - began)}


class ServerProcess:
    """A server subprocess on a free port of 127.0.0.1, logging to a file."""

    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name = name
        self.port = _free_port()
        self._log = open(log, "w", encoding="utf-8")
        self.process = subprocess.Popen([arg.format(port=self.port) for arg in command],
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> None:
        import grpc
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL_NAME
        request.inputs["text"].CopyFrom(__import__("tensorflow").make_tensor_proto(["ok"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); see "
                                   f"{self._log.name}")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                        request, timeout=10)
                return
            except grpc.RpcError:
                time.sleep(0.5)
        raise RuntimeError(f"{self.name} on port {self.port} did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def _median_levels(reports: list[dict]) -> dict[int, dict]:
    """Per concurrency level, the median over rounds of rows/s and of each percentile."""
    by_level: dict[int, list[dict]] = {}
    for report in reports:
        for level in report["levels"]:
            by_level.setdefault(level["concurrency"], []).append(level)
    merged = {}
    for concurrency, runs in by_level.items():
        merged[concurrency] = {
            "concurrency": concurrency,
            "rows_per_second": statistics.median(run["rows_per_second"] for run in runs),
            "latency_ms": {key: statistics.median(run["latency_ms"][key] for run in runs)
                           for key in ("p50", "p95", "p99")},
            "errors": sum(run["errors"] for run in runs),
            "client_cpu": statistics.median(run.get("client_cpu") or 0.0 for run in runs),
            "rounds_rows_per_second": [run["rows_per_second"] for run in runs],
        }
    return merged


def bench(port: int, data: Path, levels: str, warmup: float, duration: float,
          out: Path) -> dict:
    """`tfinetune bench serve` against 127.0.0.1:port; its JSON report."""
    command = [sys.executable, "-m", "tfinetune.cli.main", "-q", "bench", "serve",
               "--server", f"127.0.0.1:{port}", "--model-name", MODEL_NAME,
               "--data", str(sst2_file(data, "dev")), "--text-column", "sentence",
               "--concurrency", levels, "--warmup-seconds", str(warmup),
               "--duration-seconds", str(duration), "--json", str(out)]
    subprocess.run(command, check=True, stdout=sys.stderr)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="SST-2 directory (train.tsv, dev.tsv)")
    parser.add_argument("--concurrency", default="1,4,16,32,64")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--duration-seconds", type=float, default=10.0)
    parser.add_argument("--in-process-seconds", type=float, default=10.0)
    parser.add_argument("--servers", default="plain,batching",
                        help="comma list of plain, batching, unbatched")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    from tfinetune import _environment  # noqa: F401

    base = exported_model(args.data, args.max_length)
    from export.exporter import existing_versions

    versions = existing_versions(base)
    version_dir = versions[max(versions)]
    texts = _dev_texts(args.data)
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    parameters = (f"max_batch_size {{ value: {args.max_batch_size} }}\n"
                  f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
                  f"max_enqueued_batches {{ value: 1000 }}\n"
                  f"num_batch_threads {{ value: {args.num_batch_threads} }}\n")
    names = args.servers.split(",")
    limits: list[dict] = []
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="serve-latency-") as tmp:
        work = Path(tmp)
        (work / "batching.txt").write_text(parameters)
        serve = [sys.executable, "-m", "tfinetune.cli.main", "serve",
                 f"--model_name={MODEL_NAME}", f"--model_base_path={base}", "--port={port}",
                 "--file_system_poll_wait_seconds=0"]
        commands = {
            "plain": [sys.executable, str(HERE / "plain_predict_server.py"), str(version_dir),
                      "--port", "{port}"],
            "batching": serve + ["--enable_batching=true",
                                 f"--batching_parameters_file={work / 'batching.txt'}"],
            "unbatched": serve,
        }
        servers = {name: ServerProcess(name, commands[name], work / f"{name}.log")
                   for name in names}
        try:
            for server in servers.values():
                server.wait_ready()
            # Rounds interleave the references and the servers (order reversed every round),
            # so that drift in the machine's load hits them alike; medians are reported.
            for round_index in range(args.rounds):
                logger.info("Round %d: in-process limit ...", round_index + 1)
                limits.append(in_process_limit(function, texts, args.in_process_seconds))
                order = names if round_index % 2 == 0 else list(reversed(names))
                for name in order:
                    logger.info("Round %d: measuring %s ...", round_index + 1, name)
                    rounds[name].append(bench(servers[name].port, args.data, args.concurrency,
                                              args.warmup_seconds, args.duration_seconds,
                                              work / f"{name}-{round_index}.json"))
            logger.info("In-process limit (after the last round) ...")
            limits.append(in_process_limit(function, texts, args.in_process_seconds))
        finally:
            for server in servers.values():
                server.stop()

    limit_rps = statistics.median(limit["batched_rows_per_second"] for limit in limits)
    limit_p50 = statistics.median(limit["single_p50_ms"] for limit in limits)
    levels = {name: _median_levels(reports) for name, reports in rounds.items()}
    checks = {}
    if "batching" in levels:
        batching = levels["batching"]
        if 32 in batching:
            checks["c32_rows_per_second_vs_limit"] = {
                "value": batching[32]["rows_per_second"] / limit_rps, "target": ">= 0.85"}
            if "plain" in levels and 32 in levels["plain"]:
                checks["c32_rows_per_second_vs_plain"] = {
                    "value": batching[32]["rows_per_second"]
                    / levels["plain"][32]["rows_per_second"], "target": ">= 3"}
        if 1 in batching:
            checks["c1_p50_ms_minus_1ms_vs_limit_p50"] = {
                "value": (batching[1]["latency_ms"]["p50"] - 1.0) / limit_p50,
                "target": "<= 1.2", "p50_ms": batching[1]["latency_ms"]["p50"],
                "bound_ms": 1.2 * limit_p50 + 1.0}
    for check in checks.values():
        bound = float(check["target"].split()[1])
        check["met"] = (check["value"] >= bound if check["target"].startswith(">=")
                        else check["value"] <= bound)

    import grpc

    result = {
        "benchmark": "serve_latency",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "versions": {"tensorflow": tf.__version__, "grpcio": grpc.__version__},
        "settings": {**{k: str(v) for k, v in vars(args).items()},
                     "batching_parameters": parameters, "model": str(base),
                     "request": "Predict, one raw SST-2 dev text"},
        "in_process_limit": limits,
        "servers": {name: {"median": levels[name], "rounds": reports}
                    for name, reports in rounds.items()},
        "checks": checks,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"serve_latency-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    before_after_rps = ", ".join(f"{x['batched_rows_per_second']:.1f}" for x in limits)
    before_after_p50 = ", ".join(f"{x['single_p50_ms']:.2f}" for x in limits)
    print(f"In-process limit: {limit_rps:.1f} rows/s at batch 32 (each measurement: "
          f"{before_after_rps}); single-text p50 {limit_p50:.2f} ms ({before_after_p50})")
    sorted_rps = statistics.median(x["length_sorted_batched_rows_per_second"] for x in limits)
    print(f"(informational) in-process, batches of 32 texts of similar length: "
          f"{sorted_rps:.1f} rows/s")
    print("| server | concurrency | rows/s | ×limit | p50 ms | p95 ms | p99 ms | errors "
          "| load generator CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, by_level in levels.items():
        for level, row in by_level.items():
            lat = row["latency_ms"]
            print(f"| {name} | {level} | {row['rows_per_second']:.1f} | "
                  f"{row['rows_per_second'] / limit_rps:.2f} | {lat['p50']:.2f} | "
                  f"{lat['p95']:.2f} | {lat['p99']:.2f} | {row['errors']} | "
                  f"{100 * row['client_cpu']:.0f}% |")
    for name, check in checks.items():
        print(f"{name}: {check['value']:.2f} (target {check['target']}) "
              f"{'MET' if check['met'] else 'NOT MET'}")
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
