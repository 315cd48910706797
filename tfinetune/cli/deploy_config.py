"""`tfinetune deploy-config`: the model, batching and monitoring config files (plus a Kubernetes
ConfigMap and a docker compose override) that stock `tensorflow_model_server` and
`tfinetune serve` read, for a set of exported models."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

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
        files: The checked set of models and settings to write (`serving.DeploymentFiles`).
        output_dir: Directory the files are written to.
    """

    files: Any
    output_dir: Path


@click.command("deploy-config", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "models", multiple=True, required=True, metavar="NAME=BASE_PATH",
              help="A model to serve: its name and the base path `tfinetune export` wrote "
                   "(the directory of version directories). Repeat for several models.")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory to write the files into (created if missing).")
@click.option("--container-model-root", metavar="DIR",
              help="Where the container sees the models, e.g. /models: base paths become "
                   "DIR/NAME. [default: the absolute host paths]")
@click.option("--max-batch-size", type=int,
              help="Most rows run at once by a batch. [default: 32]")
@click.option("--batch-timeout-micros", type=int,
              help="How long an open batch waits for more requests. [default: 1000]")
@click.option("--num-batch-threads", type=int,
              help="Threads running batches: the CPUs each server gets. [default: 4]")
@click.option("--max-enqueued-batches", type=int,
              help="Batches queued before new requests are refused. [default: 100]")
@click.option("--pad-variable-length-inputs", is_flag=True, default=None,
              help="Pad inputs of different lengths with their first element so they batch "
                   "together. Not for --portable (token-id) exports: attention_mask would be "
                   "padded with 1s; serve those without batching.")
@click.option("--configmap-name",
              help="metadata.name of the Kubernetes ConfigMap. [default: tfserving-config]")
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
    from serving.deployment_files import DeploymentFiles
    from serving.serving_error import ServingError

    settings = {name: value for name, value in options.items() if value is not None}
    try:
        files = DeploymentFiles(models=tuple(parse_model(model) for model in models), **settings)
    except ServingError as error:
        raise click.UsageError(error.message) from error
    written = run(DeployConfigConfig(files=files, output_dir=Path(output_dir)))
    for path in written.values():
        click.echo(str(path))


def run(config: DeployConfigConfig) -> dict[str, Path]:
    """Writes the files; returns file name -> path."""
    written = config.files.write(config.output_dir)
    logger.info("Wrote the deployment files of %s into %s",
                ", ".join(name for name, _ in config.files.models), config.output_dir)
    return written
