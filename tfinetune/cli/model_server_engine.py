"""`ModelServerEngine`: `tfinetune serve --engine tensorflow-model-server`, which replaces this
process with TensorFlow Serving's own `tensorflow_model_server` binary, given the same flags.

Only the options the user gave are passed on (TF Serving's defaults are the same as
`tfinetune serve`'s), in TF Serving's spelling `--name=value`. Options `tensorflow_model_server`
does not have are refused with what to do instead; the TF Serving flags `tfinetune serve`
accepts and ignores (`--enable_profiler`, `--tensorflow_intra_op_parallelism`, ...) mean
something to the binary, so they are passed on as given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from typing import NoReturn

import click
from click.core import ParameterSource

logger = logging.getLogger(__name__)

BINARY = "tensorflow_model_server"
ENGINE_NAME = "tensorflow-model-server"
# The exit code when the binary is not on PATH (the shell's "command not found").
BINARY_MISSING_EXIT_CODE = 127
# tensorflow_model_server's flags that take whole numbers where `tfinetune serve` takes floats.
_INTEGER_FLAGS = ("file_system_poll_wait_seconds", "model_config_file_poll_wait_seconds")
# Interfaces tensorflow_model_server listens on: all of them (server.cc: "0.0.0.0:<port>").
_ALL_INTERFACES = ("0.0.0.0", "::", "[::]")
# `tfinetune serve` options tensorflow_model_server does not have -> what to do instead.
TFINETUNE_ONLY_OPTIONS = {
    "grace_seconds": "tensorflow_model_server does not wait for requests in flight on "
                     "SIGTERM; give the pod a preStop delay instead.",
    "max_in_flight_requests": "tensorflow_model_server does not bound requests in flight; "
                              "bound the batching queue with max_enqueued_batches in "
                              "--batching_parameters_file.",
    "rest_api_max_body_bytes": "tensorflow_model_server has no REST body limit; set one on the "
                               "ingress or proxy in front of it.",
    "rest_api_ssl_config_file": "tensorflow_model_server's REST API is plain HTTP; terminate "
                                "TLS on the ingress or proxy in front of it.",
    "grpc_max_message_bytes": "tensorflow_model_server always allows 2 GiB messages; use "
                              "--grpc_channel_arguments=grpc.max_receive_message_length=N.",
    "model_version_policy": "write model_version_policy { ... } in a --model_config_file "
                            "(tfinetune deploy-config writes one).",
}
# `tfinetune serve` options that are not passed as flags at all.
_NOT_FLAGS = ("engine", "host")


def _flag_value(name: str, value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in _INTEGER_FLAGS:
        if float(value) != int(value):
            raise click.UsageError(f"--{name} must be whole seconds for {BINARY}. "
                                   f"Received: {value:g}")
        return str(int(value))
    if name == "model_base_path":  # TF Serving refuses relative base paths.
        return os.path.abspath(value)
    return str(value)


@dataclasses.dataclass(frozen=True)
class ModelServerEngine:
    """The `tensorflow_model_server` command line equivalent to a `tfinetune serve` call.

    Attributes:
        flags: `--name=value` flags for the binary, in the order they were given.
    """

    flags: tuple[str, ...]

    @classmethod
    def from_context(cls, context: click.Context) -> "ModelServerEngine":
        """Maps the options given on `tfinetune serve`'s command line to TF Serving's flags.

        Raises:
            click.UsageError: An option `tensorflow_model_server` does not have, or neither
                --model-base-path nor --model-config-file.
        """
        given = {name: value for name, value in context.params.items()
                 if context.get_parameter_source(name) not in (
                     ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)}
        host = given.get("host")
        if host is not None and host not in _ALL_INTERFACES:
            raise click.UsageError(f"--host {host}: {BINARY} has no --host; it listens on all "
                                   "interfaces (0.0.0.0). Drop --host, or use --engine "
                                   "tfinetune.")
        for name, advice in TFINETUNE_ONLY_OPTIONS.items():
            value = given.get(name)
            if value is None or (name == "model_version_policy" and value == "latest"):
                continue
            raise click.UsageError(f"--{name.replace('_', '-')} is a tfinetune serve option; "
                                   f"{BINARY} has no such flag: {advice} Or use --engine "
                                   "tfinetune.")
        if not given.get("model_base_path") and not given.get("model_config_file"):
            raise click.UsageError(
                "Missing --model-base-path (or --model-config-file): the directory of the "
                "model's version subdirectories, e.g. --model-base-path /models/sentiment.")
        if host is None:
            logger.warning("%s listens on all interfaces (0.0.0.0), not on 127.0.0.1 as "
                           "tfinetune serve does by default.", BINARY)
        flags = tuple(f"--{name}={_flag_value(name, value)}" for name, value in given.items()
                      if name not in _NOT_FLAGS and name not in TFINETUNE_ONLY_OPTIONS
                      and value is not None)
        return cls(flags)

    @property
    def argv(self) -> list[str]:
        return [BINARY, *self.flags]

    def exec(self) -> NoReturn:
        """Replaces this process with `tensorflow_model_server FLAGS...` found on PATH.

        Raises:
            click.ClickException: The binary is not on PATH (exit code 127).
        """
        binary = shutil.which(BINARY)
        if binary is None:
            error = click.ClickException(
                f"--engine {ENGINE_NAME}: {BINARY} is not on PATH ({os.environ.get('PATH', '')})."
                f" Install TensorFlow Serving's binary: the tensorflow-model-server apt package "
                f"(https://www.tensorflow.org/tfx/serving/setup), or run the tensorflow/serving "
                f"Docker image (see serving/deploy/). Or use --engine tfinetune (the default).")
            error.exit_code = BINARY_MISSING_EXIT_CODE
            raise error
        logger.info("Running %s %s", binary, " ".join(self.flags))
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os.execv(binary, self.argv)
