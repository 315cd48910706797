"""`tfinetune predict`: run texts through a running model server (any task)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import click

from serving.server_targets import parse_targets  # pure Python: imports no TensorFlow
from tfinetune.cli.quiet_import import import_tensorflow_quietly
from tfinetune.cli.server_option import server_option
from tfinetune.cli.tls_options import TlsOptions
from tfinetune.cli.tls_options import tls_options
from tfinetune.cli.serve import TfServingOption
from tfinetune.cli.tokenizer_option import load_client_tokenizer
from tfinetune.cli.tokenizer_option import tokenizer_option

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """Options of `tfinetune predict`.

    Args:
        server: gRPC target of the model server, `HOST:PORT`, or of several replicas (a
            sequence or comma-separated; forms: `serving.server_targets`): texts are spread
            over them and a failed request is retried on another. Kept comma-joined;
            `servers` has the targets one by one.
        model_name: Name of the model on the server.
        signature_name: Signature to call.
        model_version: Pin a model version; None = the server's latest.
        timeout: Seconds per request attempt.
        batch_size: Texts per Predict request.
        tls: How to reach the server over TLS (plaintext by default).
        tokenizer: Export whose tokenizer tokenises on the client (models exported with
            `--portable`); None for models that take text.
        pad_to_max_length: With `tokenizer`, pad every text to the export's max_length.
    """

    model_name: str
    server: str | Sequence[str] = "localhost:8500"
    signature_name: str = "serving_default"
    model_version: int | None = None
    timeout: float = 30.0
    batch_size: int = 64
    tls: TlsOptions = TlsOptions()
    tokenizer: Path | None = None
    pad_to_max_length: bool = False
    #: The targets of `server`, one per replica (set from `server`).
    servers: tuple[str, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        try:
            servers = parse_targets(self.server, "--server")
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        object.__setattr__(self, "servers", servers)
        object.__setattr__(self, "server", ",".join(servers))


@click.command("predict", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@server_option
@click.option("--model-name", "--model_name", "model_name", cls=TfServingOption, required=True,
              metavar="NAME", help="Model name on the server.")
@click.option("--signature-name", default="serving_default", show_default=True,
              help="Signature to call.")
@click.option("--model-version", type=int, metavar="N",
              help="Ask for this version instead of the latest.")
@click.option("--text-pair", "--context", "text_pairs", multiple=True, metavar="TEXT",
              help="Second text, for sentence-pair models, or the context of a question "
                   "(question-answering models): give it once per TEXT, in order.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds per request (UNAVAILABLE is retried).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Texts per Predict request.")
@tls_options
@tokenizer_option
def command(texts: tuple[str, ...], text_pairs: tuple[str, ...], **options) -> None:
    """Run TEXT arguments (or the lines of stdin, with no TEXT or `-`) through a model
    server, printing one JSON line per text (and "text_pair" for pair models):

    
    \b
    single-label: {"text", "label", "probabilities": {label: probability}}
    multi-label:  {"text", "labels": [predicted labels], "scores": {label: score}}
    regression:   {"text", "value": number}
    NER:          {"text", "entities": [{"type", "start", "end", "text", "score"}]}
    QA:           {"question", "context", "answer", "start", "end", "score"}
    seq2seq:      {"text", "generated_text"}

    The model's outputs tell which (no flag needed); offsets count characters.

    \b
    tfinetune predict --model-name sentiment "a great movie" "a dull plot"
    tfinetune predict --model-name nli "A man sleeps." --text-pair "Nobody sleeps."
    tfinetune predict --model-name qa "Where is Paris?" --context "Paris is in France."
    cat reviews.txt | tfinetune predict --server host:8500 --model-name sentiment
    tfinetune predict --server host1:8500,host2:8500 --model-name sentiment "a great movie"
    tfinetune predict --model-name sentiment --tokenizer models/sentiment "a great movie"
    """
    tls = TlsOptions.pop_from(options)
    config = PredictConfig(**options, tls=tls)
    if not texts or texts == ("-",):
        texts = tuple(_stdin_lines())
    if text_pairs and len(text_pairs) != len(texts):
        raise click.UsageError(
            f"Give --text-pair once per text. Expected {len(texts)} --text-pair values. "
            f"Received: {len(text_pairs)}")
    if not texts:
        raise click.UsageError("No texts to predict: pass TEXT arguments or lines on stdin.")
    run(config, list(texts), list(text_pairs) or None)


def run(config: PredictConfig, texts: list[str], text_pairs: list[str] | None) -> None:
    """Predicts in batches and echoes one JSON line per text to stdout."""
    import_tensorflow_quietly()
    # Imported here, not at module level: serving imports TensorFlow.
    from serving.client import Client
    from serving.serving_error import ServingError

    client = Client(config.servers, config.model_name, signature_name=config.signature_name,
                    version=config.model_version, timeout=config.timeout,
                    tokenizer=load_client_tokenizer(config.tokenizer, config.pad_to_max_length),
                    **config.tls.client_arguments())
    with client:
        try:
            task = client.task()
        except ServingError as error:
            raise click.ClickException(
                f"Predict on {config.server} (model '{config.model_name}') failed with "
                f"{error.code.name}: {error.message}") from error
        if task == "question-answering" and text_pairs is None:
            raise click.UsageError(
                f"Model '{config.model_name}' answers questions: give each question's context "
                "with --context (once per question, in order).")
        first, second = (("question", "context") if task == "question-answering"
                         else ("text", "text_pair"))
        for start in range(0, len(texts), config.batch_size):
            batch = texts[start:start + config.batch_size]
            pairs = text_pairs[start:start + config.batch_size] if text_pairs else None
            try:
                predictions = client.predict(batch, pairs)
            except ServingError as error:
                raise click.ClickException(
                    f"Predict on {config.server} (model '{config.model_name}') failed with "
                    f"{error.code.name}: {error.message}") from error
            for i, prediction in enumerate(predictions):
                row = {first: batch[i]}
                if pairs:
                    row[second] = pairs[i]
                row.update(_result(prediction))
                click.echo(json.dumps(row, ensure_ascii=False))


def _result(prediction) -> dict:
    """The JSON fields of one prediction, by problem type or task."""
    if prediction.entities is not None:
        return {"entities": prediction.entities}
    if prediction.answer is not None:
        return {"answer": prediction.answer, "start": prediction.start, "end": prediction.end,
                "score": prediction.score}
    if prediction.generated_text is not None:
        return {"generated_text": prediction.generated_text}
    if prediction.value is not None:
        return {"value": prediction.value}
    if prediction.scores is not None:
        return {"labels": prediction.labels, "scores": prediction.scores}
    return {"label": prediction.label, "probabilities": prediction.probabilities}


def _stdin_lines() -> list[str]:
    stream = click.get_text_stream("stdin")
    if stream.isatty():
        click.echo("Reading texts from stdin, one per line (Ctrl-D ends).", err=True)
    return [line.rstrip("\r\n") for line in stream if line.strip()]
