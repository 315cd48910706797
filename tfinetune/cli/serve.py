"""`tfinetune serve`: serve SavedModels over TensorFlow Serving's gRPC API."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path

import click

from tfinetune.cli.quiet_import import import_tensorflow_quietly

logger = logging.getLogger(__name__)


class TfServingOption(click.Option):
    """An option that also accepts TF Serving's underscore flag spelling (`--model_name`),
    without listing it in `--help`."""

    def get_help_record(self, ctx):
        shown = [name for name in self.opts if "_" not in name.lstrip("-")]
        all_names, self.opts = self.opts, shown or self.opts
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = all_names


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Options of `tfinetune serve` (TF Serving's flags and defaults).

    Args:
        model_base_path: Directory holding one SavedModel per integer-named version
            directory (`BASE/1/saved_model.pb`).
        model_name: Name clients put in `ModelSpec.name`.
        host: Interface to listen on.
        port: gRPC port (0 picks a free one).
        file_system_poll_wait_seconds: How often new versions are looked for; <= 0 never.
        model_version_policy: Which versions to serve: `latest` (TF Serving's default),
            `latest:N`, `all` or `specific:V1,V2`.
        shutdown_grace_seconds: On SIGINT/SIGTERM, how long in-flight requests may take.
    """

    model_base_path: Path
    model_name: str = "default"
    host: str = "127.0.0.1"
    port: int = 8500
    file_system_poll_wait_seconds: float = 1.0
    model_version_policy: str = "latest"
    shutdown_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.model_name:
            raise click.BadParameter("must not be empty.", param_hint="--model-name")
        from serving.version_policy import VersionPolicy

        try:
            VersionPolicy.parse(self.model_version_policy)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--model-version-policy") from error


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=click.IntRange(0, 65535), default=8500,
              show_default=True, help="gRPC port; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for all, as tensorflow_model_server).")
@click.option("--model-name", "--model_name", "model_name", cls=TfServingOption,
              default="default", show_default=True, metavar="NAME",
              help="Name of the model in requests' ModelSpec.")
@click.option("--model-base-path", "--model_base_path", "model_base_path", cls=TfServingOption,
              required=True, metavar="DIR",
              help="Directory of version subdirectories BASE/<integer>/ (each a SavedModel).")
@click.option("--file-system-poll-wait-seconds", "--file_system_poll_wait_seconds",
              "file_system_poll_wait_seconds", cls=TfServingOption, type=float, default=1.0,
              show_default=True,
              help="Seconds between looks for new versions (loaded before the old one is "
                   "unloaded); 0 or less: never.")
@click.option("--model-version-policy", default="latest", show_default=True,
              metavar="POLICY",
              help="Versions to serve: latest (TF Serving's default), latest:N, all, or "
                   "specific:V1,V2 (TF Serving's model_version_policy without a config file).")
def command(port: int, host: str, model_name: str, model_base_path: str,
            file_system_poll_wait_seconds: float, model_version_policy: str) -> None:
    """Serve a model's versions over TensorFlow Serving's gRPC API (the latest by default).

    PredictionService (Predict, Classify, Regress, GetModelMetadata), ModelService
    (GetModelStatus), gRPC health and reflection. TF Serving's underscore flag spellings
    (--model_name, --model_base_path, --file_system_poll_wait_seconds) are accepted too.
    Ctrl-C or SIGTERM stops the server after in-flight requests finish.

    \b
    tfinetune serve --model-name sentiment --model-base-path models/sentiment --port 8500
    """
    config = ServeConfig(model_base_path=Path(model_base_path), model_name=model_name,
                         host=host, port=port,
                         file_system_poll_wait_seconds=file_system_poll_wait_seconds,
                         model_version_policy=model_version_policy)
    run(config)


def run(config: ServeConfig) -> None:
    """Starts the server, blocks until SIGINT/SIGTERM, then stops it gracefully."""
    import_tensorflow_quietly()
    # Imported here, not at module level: serving imports TensorFlow.
    from serving.server import Server
    from serving.serving_error import ServingError
    from serving.version_policy import VersionPolicy

    click.echo(f"Loading model '{config.model_name}' from {config.model_base_path} ...", err=True)
    server = Server({config.model_name: config.model_base_path}, host=config.host,
                    port=config.port,
                    file_system_poll_wait_seconds=config.file_system_poll_wait_seconds,
                    version_policy=VersionPolicy.parse(config.model_version_policy))
    try:
        server.start()
    except ServingError as error:
        raise click.ClickException(
            f"Cannot serve model '{config.model_name}' from {config.model_base_path}: "
            f"{error.message}") from error

    versions = server.available_versions(config.model_name)
    label = "version" if len(versions) == 1 else "versions"
    click.echo(f"Serving model '{config.model_name}' {label} "
               f"{', '.join(str(v) for v in versions)} on {server.address}", err=True)

    stop = threading.Event()
    previous = {}

    def request_stop(signum, frame):
        if stop.is_set():
            click.echo(f"Already stopping: waiting up to {config.shutdown_grace_seconds:g} s for "
                       f"in-flight requests.", err=True)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, request_stop)
        except ValueError:  # not the main thread: only server.stop() from elsewhere stops it
            pass
    try:
        while not stop.wait(0.5) and not server.wait(0):
            pass
        click.echo("Stopping: finishing in-flight requests ...", err=True)
    finally:
        server.stop(grace=config.shutdown_grace_seconds)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("Server stopped.", err=True)
