"""The `tfinetune` command group. Each command lives in its own module in this package."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from tfinetune import __version__

# command name → module under tfinetune.cli (dashes as underscores) exposing `command`.
# Imported only when used, so `tfinetune --help` answers without importing TensorFlow.
COMMANDS = {
    "fit": "Fine-tune a pretrained transformer for text classification.",
    "evaluate": "Print every metric of a fine-tuned run on a labelled file.",
    "export": "Export a fine-tuned run as a TF Serving SavedModel version.",
    "serve": "Serve SavedModels over TensorFlow Serving's gRPC API.",
    "predict": "Classify texts through a running model server.",
    "score": "Score a CSV/TSV/JSONL/Parquet file through a running model server.",
    "bench": "Benchmarks: `bench serve` load-tests a model server.",
    "deploy-config": "Write TF Serving model/batching/monitoring configs for exported models.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"tfinetune.cli.{name.replace('-', '_')}")
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, summary) for name, summary in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfinetune")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """Fine-tune Hugging Face TF transformers, export them, serve them, score files.

    \b
    tfinetune fit --model NAME_OR_DIR --train train.csv --validation dev.csv --output-dir run
    tfinetune export run --base-path models/sentiment
    tfinetune serve --model-name sentiment --model-base-path models/sentiment
    tfinetune score input.csv --model-name sentiment --output scored.csv
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    if verbose < 2:
        for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "urllib3", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # transformers resets its logger level on import, so its own variable is the reliable knob.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error" if verbose == 0 else "warning")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
