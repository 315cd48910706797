"""`tfinetune deploy-config`: the model, batching and monitoring config files (plus a Kubernetes
ConfigMap and a docker compose override) that stock `tensorflow_model_server` and
`tfinetune serve` read, for a set of exported models."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import click

logger = logging.getLogger(__name__)


def parse_model(value: str) -> tuple[str, str]:
    """`NAME=BASE_PATH` -> (name, base path)."""
    name, separator, base = value.partition("=")
    if not separator or not name or not base:
        raise click.BadParameter(f"expected NAME=BASE_PATH, e.g. sentiment=exports/sentiment. "
                                 f"Received: {value!r}", param_hint="--model")
    return name, base


@dataclasses.dataclass(frozen=True)
class DeployConfigConfig:
    """Options of `tfinetune deploy-config`.

    Args:
        models: `(name, base_path)` of every model; a base path holds version directories.
        output_dir: Directory the files are written to.
        container_model_root: Base path root inside the container (`ROOT/NAME`); None keeps
            the absolute host paths.
        max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches,
        pad_variable_length_inputs: The `BatchingParameters` written to `batching.config`.
        configmap_name: Name of the Kubernetes ConfigMap.
    """

    models: tuple[tuple[str, str], ...]
    output_dir: Path
    container_model_root: str | None = None
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100
    pad_variable_length_inputs: bool = False
    configmap_name: str = "tfserving-config"


@click.command("deploy-config", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "models", multiple=True, required=True, metavar="NAME=BASE_PATH",
              help="A model to serve: its name and the base path `tfinetune export` wrote "
                   "(the directory of version directories). Repeat for several models.")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory to write the files into (created if missing).")
@click.option("--container-model-root", metavar="DIR",
              help="Where the container sees the models, e.g. /models: base paths become "
                   "DIR/NAME. [default: the absolute host paths]")
@click.option("--max-batch-size", type=int, default=32, show_default=True,
              help="Most rows run at once by a batch.")
@click.option("--batch-timeout-micros", type=int, default=1000, show_default=True,
              help="How long an open batch waits for more requests.")
@click.option("--num-batch-threads", type=int, default=4, show_default=True,
              help="Threads running batches: the CPUs each server gets.")
@click.option("--max-enqueued-batches", type=int, default=100, show_default=True,
              help="Batches queued before new requests are refused.")
@click.option("--pad-variable-length-inputs", is_flag=True,
              help="Pad inputs of different lengths with their first element so they batch "
                   "together. Not for --portable (token-id) exports: attention_mask would be "
                   "padded with 1s; serve those without batching.")
@click.option("--configmap-name", default="tfserving-config", show_default=True,
              help="metadata.name of the Kubernetes ConfigMap.")
def command(models: tuple[str, ...], output_dir: str, **options) -> None:
    """Write models.config, batching.config and monitoring.config (TF Serving's
    --model_config_file, --batching_parameters_file, --monitoring_config_file), a Kubernetes
    configmap.yaml holding them and docker-compose.override.yml for serving/deploy/.

    \b
    tfinetune deploy-config --model sentiment=exports/sentiment --model ner=exports/ner \\
        --container-model-root /models -o deploy-config
    docker compose -f serving/deploy/docker-compose.yml \\
        -f deploy-config/docker-compose.override.yml up
    kubectl apply -f deploy-config/configmap.yaml \\
        -f serving/deploy/kubernetes/deployment.yaml \\
        -f serving/deploy/kubernetes/service.yaml -f serving/deploy/kubernetes/hpa.yaml
    """
    config = DeployConfigConfig(models=tuple(parse_model(model) for model in models),
                                output_dir=Path(output_dir), **options)
    written = run(config)
    for path in written.values():
        click.echo(str(path))


def run(config: DeployConfigConfig) -> dict[str, Path]:
    """Checks the models and writes the files; returns file name -> path."""
    from serving.deployment_files import DeploymentFiles
    from serving.serving_error import ServingError

    options = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
               if field.name != "output_dir"}
    try:
        files = DeploymentFiles(**options)
    except ServingError as error:
        raise click.UsageError(error.message) from error
    written = files.write(config.output_dir)
    logger.info("Wrote the deployment files of %s into %s",
                ", ".join(name for name, _ in config.models), config.output_dir)
    return written
