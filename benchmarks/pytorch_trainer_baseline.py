"""Baseline B of `fit_throughput.py`: the PyTorch `transformers.Trainer` on CPU.

Runs inside the separate virtualenv `fit_throughput.py` creates (CPU torch wheel, transformers,
accelerate); torch never enters the project's environment, and this script imports nothing from
it. Same model, data, batch, length and schedule as the TF configurations: dynamic per-batch
padding (`DataCollatorWithPadding`) of random batches, AdamW lr 5e-5 with 10 % warmup and linear
decay, weight decay 0.01. Writes examples/s of the last epoch, padded tokens and dev accuracy as
JSON to `--json-out`.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification
from transformers import AutoTokenizer
from transformers import DataCollatorWithPadding
from transformers import Trainer
from transformers import TrainerCallback
from transformers import TrainingArguments

# Runs in its own torch virtualenv: the SST-2 reader comes from the (stdlib-only) module of the
# benchmark that starts it; this script's directory is sys.path[0].
from fit_throughput import read_sst2


class Rows(torch.utils.data.Dataset):
    def __init__(self, encoded, labels):
        self.encoded, self.labels = encoded, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        row = {key: values[index] for key, values in self.encoded.items()}
        row["labels"] = self.labels[index]
        return row


class EpochTimer(TrainerCallback):
    def __init__(self):
        self.epoch_seconds = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_seconds.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, kind in (("data", Path), ("model", str), ("rows", int), ("epochs", int),
                       ("batch-size", int), ("max-length", int), ("learning-rate", float),
                       ("warmup-ratio", float), ("weight-decay", float), ("seed", int),
                       ("json-out", Path)):
        parser.add_argument(f"--{name}", type=kind, required=True)
    args = parser.parse_args()

    texts, labels = read_sst2(args.data / "train.tsv", args.rows)
    dev_texts, dev_labels = read_sst2(args.data / "dev.tsv")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    encoded = tokenizer(texts, truncation=True, max_length=args.max_length)
    dev_encoded = tokenizer(dev_texts, truncation=True, max_length=args.max_length)
    collator = DataCollatorWithPadding(tokenizer)
    padded = []

    def collate(rows):
        batch = collator(rows)
        padded.append(batch["input_ids"].numel())
        return batch

    timer = EpochTimer()

    class PaddedPerEpoch(TrainerCallback):
        def __init__(self):
            self.per_epoch = []

        def on_epoch_begin(self, *args, **kwargs):
            padded.clear()

        def on_epoch_end(self, *args, **kwargs):
            self.per_epoch.append(sum(padded))

    padded_per_epoch = PaddedPerEpoch()
    work = Path(args.json_out).with_suffix(".trainer")
    training_args = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs,
        learning_rate=args.learning_rate, warmup_ratio=args.warmup_ratio,
        lr_scheduler_type="linear", weight_decay=args.weight_decay, seed=args.seed,
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=Rows(encoded, labels),
                      data_collator=collate, callbacks=[padded_per_epoch, timer])
    trainer.train()
    prediction = trainer.predict(Rows(dev_encoded, dev_labels))
    accuracy = float((np.argmax(prediction.predictions, axis=-1) == np.asarray(dev_labels)).mean())
    seconds = timer.epoch_seconds[-1]
    real = sum(len(row) for row in encoded["input_ids"])
    parameters = sum(p.numel() for name, p in model.named_parameters()
                     if p.requires_grad and "embeddings" not in name)
    args.json_out.write_text(json.dumps({
        "epoch_seconds": timer.epoch_seconds,
        "examples_per_s": args.rows / seconds,
        "real_tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded_per_epoch.per_epoch[-1] / seconds,
        "padding_factor": padded_per_epoch.per_epoch[-1] / real,
        "dev_accuracy": accuracy,
        "train_flops_per_padded_token": 6 * parameters,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
