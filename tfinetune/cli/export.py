"""`tfinetune export`: a fine-tuned run directory → a TF Serving SavedModel version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from tfinetune.cli.quiet_import import import_tensorflow_quietly


@dataclasses.dataclass(frozen=True)
class ExportCommandConfig:
    """Options of `tfinetune export`.

    Args:
        run_dir: Run directory written by `tfinetune fit`.
        base_path: Model base path; the SavedModel goes to `base_path/<version>/`.
        version: Version to write; None: one above the highest existing version, or 1.
        max_length: Maximum tokens per input; None: the run's `max_length`.
        portable: Core TensorFlow ops only (token-id signatures; clients tokenise), for stock
            TF Serving images.
    """

    run_dir: Path
    base_path: Path
    version: int | None = None
    max_length: int | None = None
    portable: bool = False


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-b", "--base-path", required=True, metavar="DIR",
              type=click.Path(path_type=Path, file_okay=False),
              help="Model base path (the directory TF Serving polls); created if missing.")
@click.option("--version", type=click.IntRange(min=0), default=None, metavar="N",
              help="Version to write (never overwritten). Default: highest existing + 1, or 1.")
@click.option("--max-length", type=click.IntRange(min=1), default=None, metavar="N",
              help="Maximum tokens per input, special tokens included. Default: the run's "
                   "max_length from fit_config.yaml.")
@click.option("--portable", is_flag=True,
              help="For stock TensorFlow Serving images: leave the tokenizer (tensorflow-text "
                   "ops) out of the graph. Every signature then takes token ids (input_ids, "
                   "attention_mask, token_type_ids) and clients tokenise with assets.extra/"
                   "tokenizer/tokenizer.json (predict/score --tokenizer). Text classification, "
                   "NER (token ids of word-piece windows -> per-token probabilities; the client "
                   "splits words and decodes entities) and seq2seq runs (input_ids, "
                   "attention_mask -> generated_ids; the client adds the source prefix and "
                   "decodes) and question-answering runs (token ids of question/context "
                   "windows -> start/end logits; the client cuts the windows and chooses the "
                   "answer spans).")
def command(run_dir: Path, base_path: Path, version: int | None,
            max_length: int | None, portable: bool) -> None:
    """Export a fine-tuned run as a SavedModel version, tokenizer included.

    Writes BASE_PATH/<version>/ atomically (built in a temporary directory beside it, reloaded,
    checked against the in-memory model, then renamed). The run's task decides the signatures:
    classifiers get serving_default (raw strings), tokens (token ids) and classify or regress
    (tf.Example, TF Serving's Classify/Regress API); NER models serving_default (text → per-word
    tags, scores, offsets) and tokens; QA models serving_default (question, context → answer,
    start, end, score) and tokens; seq2seq models serving_default (text → generated_text).
    Prints the version directory on stdout.

    With --portable the graph holds core TensorFlow ops only (for stock TF Serving images,
    whose tensorflow-text may be older): serving_default and tokens take token ids and give
    the same outputs, classify/regress take tf.Examples of token ids, and `tfinetune predict`
    and `score` tokenise on the client (--tokenizer). NER and seq2seq runs export this way too:
    the client splits words, windows and decodes entities (NER) or adds the source prefix and
    decodes the generated ids (seq2seq), or cuts question/context windows and chooses the
    answer spans (question answering), giving the default export's results.

    \b
    tfinetune export runs/sentiment --base-path models/sentiment
    tfinetune export runs/sentiment --base-path models/sentiment --version 3 --max-length 128
    tfinetune export runs/sentiment --base-path models/sentiment-portable --portable
    """
    config = ExportCommandConfig(run_dir=run_dir, base_path=base_path, version=version,
                                 max_length=max_length, portable=portable)
    run(config)


def run(config: ExportCommandConfig) -> None:
    """Runs the export and reports the result: the path on stdout, a summary on stderr."""
    import_tensorflow_quietly()
    from export.errors import ExportError
    from export.exporter import export_model

    click.echo(f"Exporting {config.run_dir} to {config.base_path} ...", err=True)
    try:
        result = export_model(config.run_dir, config.base_path, version=config.version,
                              max_length=config.max_length, portable=config.portable)
    except ExportError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Exported version {result.version} (signatures: {', '.join(result.signatures)}; "
               f"parity max |difference| {result.max_abs_difference:.2g}).", err=True)
    click.echo(str(result.path))
