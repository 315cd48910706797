"""`tfinetune serve`: serve SavedModels over TensorFlow Serving's gRPC (and REST) API."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path

import click

from serving.server_options import DEFAULT_MAX_IN_FLIGHT_REQUESTS
from tfinetune.cli.quiet_import import import_tensorflow_quietly

logger = logging.getLogger(__name__)

# tensorflow_model_server flags that have no meaning for this server (GPU, profiler, TFLite,
# thread pools of the C++ runtime, ...). They are accepted so that existing launch scripts
# run unchanged, and logged as ignored.
IGNORED_TF_SERVING_FLAGS = (
    "enable_profiler", "per_process_gpu_memory_fraction", "flush_filesystem_caches",
    "num_load_threads", "num_unload_threads", "platform_config_file", "prefer_tflite_model",
    "tensorflow_session_config_file", "thread_pool_factory_config_file", "mixed_precision",
    "xla_cpu_compilation_enabled", "use_alts_credentials", "grpc_channel_arguments",
    "enable_grpc_healthcheck_service", "enable_per_model_batching_parameters",
    "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism", "remove_unused_fields_from_bundle_metagraph",
    "model_config_file_poll_wait_seconds_deprecated",
)


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


def tf_serving_option(name: str, **kwargs):
    """`--name-with-dashes` plus TF Serving's `--name_with_underscores`, stored as `name`.

    Boolean options work both as flags (`--enable-batching`) and with TF Serving's explicit
    values (`--enable_batching=true`, `--enable_model_warmup=false`).
    """
    if kwargs.get("type") is bool:
        kwargs.update(type=click.BOOL, is_flag=False, flag_value="true")
    return click.option(f"--{name.replace('_', '-')}", f"--{name}", name, cls=TfServingOption,
                        **kwargs)


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Options of `tfinetune serve`.

    Args:
        options: The server's settings (TF Serving's flags and defaults).
        model_base_path: Directory holding one SavedModel per integer-named version
            directory (`BASE/1/saved_model.pb`); not used with a model config file.
        model_name: Name clients put in `ModelSpec.name`.
        model_version_policy: Which versions to serve: `latest` (TF Serving's default),
            `latest:N`, `all` or `specific:V1,V2`.
        grace_seconds: On SIGINT/SIGTERM, how long in-flight requests may take to finish;
            those still running then are cancelled.
    """

    options: object
    model_base_path: Path | None = None
    model_name: str = "default"
    model_version_policy: str = "latest"
    grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.model_name:
            raise click.BadParameter("must not be empty.", param_hint="--model-name")
        if self.model_base_path is None and not self.options.model_config_file:
            raise click.UsageError(
                "Missing --model-base-path (or --model-config-file): the directory of the "
                "model's version subdirectories, e.g. --model-base-path /models/sentiment.")
        from serving.version_policy import VersionPolicy

        try:
            VersionPolicy.parse(self.model_version_policy)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--model-version-policy") from error
        if self.grace_seconds < 0:
            raise click.BadParameter(f"must be >= 0. Received: {self.grace_seconds}",
                                     param_hint="--grace-seconds")


def _ignored_option(name: str):
    return click.option(f"--{name}", name, cls=TfServingOption, hidden=True, default=None,
                        is_flag=False, flag_value="true", expose_value=True)


def _with_ignored_flags(function):
    for name in IGNORED_TF_SERVING_FLAGS:
        function = _ignored_option(name)(function)
    return function


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=click.IntRange(0, 65535), default=8500, show_default=True,
              help="gRPC port; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for all, as tensorflow_model_server).")
@tf_serving_option("model_name", default="default", show_default=True, metavar="NAME",
                   help="Name of the model in requests' ModelSpec.")
@tf_serving_option("model_base_path", metavar="DIR",
                   help="Directory of version subdirectories BASE/<integer>/ (each a "
                        "SavedModel).")
@tf_serving_option("model_version_policy", default="latest", show_default=True,
                   metavar="POLICY",
                   help="Versions to serve: latest (TF Serving's default), latest:N, all, or "
                        "specific:V1,V2 (TF Serving's model_version_policy without a config "
                        "file).")
@tf_serving_option("model_config_file", metavar="FILE",
                   help="TF Serving ModelServerConfig text file (model_config_list); replaces "
                        "--model-name/--model-base-path.")
@tf_serving_option("model_config_file_poll_wait_seconds", type=float, default=0.0,
                   show_default=True, help="Re-read --model-config-file this often; 0: never.")
@tf_serving_option("file_system_poll_wait_seconds", type=float, default=1.0, show_default=True,
                   help="Seconds between looks for new versions (loaded before the old one is "
                        "unloaded); 0 or less: never.")
@tf_serving_option("allow_version_labels_for_unavailable_models", type=bool, default=False,
                   help="Let new version labels point at versions not loaded yet.")
@tf_serving_option("max_num_load_retries", type=click.IntRange(min=0), default=5,
                   show_default=True, help="Retries of a version that failed to load.")
@tf_serving_option("load_retry_interval_micros", type=click.IntRange(min=0),
                   default=60_000_000, show_default=True,
                   help="Least time between load attempts of a version.")
@tf_serving_option("saved_model_tags", default="serve", show_default=True, metavar="TAGS",
                   help="Comma-separated MetaGraphDef tags to load.")
@tf_serving_option("enable_model_warmup", type=bool, default=True, show_default=True,
                   help="Replay assets.extra/tf_serving_warmup_requests before serving a "
                        "version.")
@tf_serving_option("num_request_iterations_for_warmup", type=click.IntRange(min=1), default=1,
                   show_default=True, help="Times each warm-up request is replayed.")
@tf_serving_option("rest_api_port", type=click.IntRange(0, 65535), default=0,
                   show_default=True, help="HTTP/REST API port; 0: no REST API.")
@tf_serving_option("rest_api_num_threads", type=click.IntRange(min=1),
                   help="REST worker threads. [default: 4 x CPUs]")
@tf_serving_option("rest_api_timeout_in_ms", type=click.IntRange(min=0), default=30000,
                   show_default=True, help="Deadline of a REST request.")
@tf_serving_option("rest_api_enable_cors_support", type=bool, default=False,
                   help="Add CORS headers to REST responses.")
@tf_serving_option("rest_api_max_body_bytes", type=click.IntRange(min=1), default=64 * 2**20,
                   show_default=True,
                   help="Largest REST request body (after gunzip); larger ones get HTTP 413.")
@tf_serving_option("rest_api_ssl_config_file", metavar="FILE",
                   help="SSLConfig text file (as --ssl-config-file, may be the same file): "
                        "HTTPS for the REST API.")
@tf_serving_option("enable_batching", type=bool, default=False,
                   help="Merge concurrent requests to the same signature into one run.")
@tf_serving_option("batching_parameters_file", metavar="FILE",
                   help="TF Serving BatchingParameters text file.")
@tf_serving_option("monitoring_config_file", metavar="FILE",
                   help="TF Serving MonitoringConfig text file (Prometheus on the REST port).")
@tf_serving_option("ssl_config_file", metavar="FILE",
                   help="TF Serving SSLConfig text file: TLS for gRPC.")
@tf_serving_option("grpc_socket_path", metavar="PATH", help="Also listen on this UNIX socket.")
@tf_serving_option("grpc_max_threads", type=click.IntRange(min=1),
                   help="gRPC worker threads. [default: 4 x CPUs]")
@tf_serving_option("grpc_max_message_bytes", type=click.IntRange(min=1), default=2**31 - 1,
                   show_default=True, help="Largest gRPC message accepted or sent.")
@tf_serving_option("max_in_flight_requests", type=click.IntRange(min=0),
                   default=DEFAULT_MAX_IN_FLIGHT_REQUESTS, show_default=True,
                   help="Most requests held at once per transport (running or queued); past it "
                        "new ones get RESOURCE_EXHAUSTED / HTTP 429 at once. 0: no limit.")
@click.option("--grace-seconds", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="On SIGTERM/Ctrl-C, how long in-flight requests may take to finish before "
                   "they are cancelled.")
@tf_serving_option("enable_signature_method_name_check", type=bool, default=False,
                   help="Refuse requests whose API does not match the signature's method.")
@tf_serving_option("enable_serialization_as_tensor_content", type=bool, default=False,
                   help="Write output tensors as tensor_content.")
@click.option("--engine", type=click.Choice(["tfinetune", "tensorflow-model-server"]),
              default="tfinetune", show_default=True,
              help="tensorflow-model-server: run TF Serving's own binary (on PATH) with these "
                   "flags instead of this server.")
@_with_ignored_flags
def command(model_name: str, model_base_path: str | None, model_version_policy: str,
            saved_model_tags: str, grace_seconds: float, engine: str, **flags) -> None:
    """Serve SavedModels over TensorFlow Serving's API (the latest version by default).

    PredictionService (Predict, Classify, Regress, MultiInference, GetModelMetadata),
    ModelService (GetModelStatus, HandleReloadConfigRequest), gRPC health and reflection, and
    the REST API with --rest-api-port. Flags are tensorflow_model_server's, with dashes; its
    underscore spellings (--model_name=..., --enable_batching=true) are accepted too, and
    its flags that mean nothing here are accepted and ignored. Ctrl-C or SIGTERM stops the
    server after in-flight requests finish.

    \b
    tfinetune serve --model-name sentiment --model-base-path /models/sentiment --port 8500
    tfinetune serve --model_config_file=/models/models.config --rest_api_port=8501
    """
    if engine == "tensorflow-model-server":
        from tfinetune.cli.model_server_engine import ModelServerEngine

        ModelServerEngine.from_context(click.get_current_context()).exec()
    ignored = {name: flags.pop(name) for name in IGNORED_TF_SERVING_FLAGS}
    for name, value in ignored.items():
        if value is not None:
            logger.warning("--%s has no effect on this server; ignored.", name)
    from serving.server_options import ServerOptions

    tags = tuple(tag.strip() for tag in saved_model_tags.split(",") if tag.strip())
    try:
        options = ServerOptions(saved_model_tags=tags, **flags)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    config = ServeConfig(options=options,
                         model_base_path=Path(model_base_path) if model_base_path else None,
                         model_name=model_name, model_version_policy=model_version_policy,
                         grace_seconds=grace_seconds)
    run(config)


def run(config: ServeConfig) -> None:
    """Starts the server, blocks until SIGINT/SIGTERM, then stops it gracefully."""
    import_tensorflow_quietly()
    # Imported here, not at module level: serving imports TensorFlow.
    from serving.server import Server
    from serving.serving_error import ServingError
    from serving.version_policy import VersionPolicy

    options = config.options
    if options.model_config_file:
        if config.model_base_path is not None:
            logger.warning("--model-config-file is set: --model-name and --model-base-path are "
                           "ignored (as in tensorflow_model_server).")
        what = f"models of {options.model_config_file}"
        server = Server(options=options)
    else:
        what = f"model '{config.model_name}' from {config.model_base_path}"
        server = Server({config.model_name: config.model_base_path}, options=options,
                        version_policy=VersionPolicy.parse(config.model_version_policy))
    click.echo(f"Loading {what} ...", err=True)
    try:
        server.start()
    except ServingError as error:
        raise click.ClickException(f"Cannot serve {what}: {error.message}") from error

    stop = threading.Event()
    previous = {}

    def request_stop(signum, frame):
        if stop.is_set():
            click.echo(f"Already stopping: waiting up to {config.grace_seconds:g} s for "
                       f"in-flight requests.", err=True)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, request_stop)
        except ValueError:  # not the main thread: only server.stop() from elsewhere stops it
            pass
    try:
        # Announced once SIGTERM is handled, so that a supervisor may stop it right away.
        for name in server.model_manager.model_names:
            versions = server.available_versions(name)
            label = "version" if len(versions) == 1 else "versions"
            click.echo(f"Serving model '{name}' {label} {', '.join(str(v) for v in versions)} "
                       f"on {server.address}", err=True)
        if server.rest_port is not None:
            host = f"[{options.host}]" if ":" in options.host else options.host
            scheme = "https" if options.rest_api_ssl_config_file else "http"
            click.echo(f"REST API on {scheme}://{host}:{server.rest_port}", err=True)
        while not stop.wait(0.5) and not server.wait(0):
            pass
        click.echo(f"Stopping: finishing in-flight requests (up to {config.grace_seconds:g} s) "
                   f"...", err=True)
    finally:
        server.stop(grace=config.grace_seconds)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("Server stopped.", err=True)
