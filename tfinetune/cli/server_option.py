"""`--server`, shared by the commands that call a model server (`predict`, `score`): one
address, or several replicas to spread the requests over."""

from __future__ import annotations

import click

from serving.server_targets import parse_targets  # pure Python: imports no TensorFlow
from tfinetune.score_config import DEFAULT_SERVER

SERVER_HELP = (
    "gRPC address of the model server. Several replicas: repeat --server or separate "
    "addresses with commas; requests are spread over them (round robin) and a request that "
    "fails with a transient error is retried on another replica. A name resolving to several "
    "addresses (e.g. dns:///tfserving-headless:8500, a Kubernetes headless Service) is spread "
    "over all of them; ipv4:A:PORT,B:PORT and unix:PATH work too.")


def _targets(context: click.Context, parameter: click.Parameter,
             value: tuple[str, ...]) -> tuple[str, ...]:
    given = value[0] if len(value) == 1 else list(value)  # as typed, in the error
    try:
        return parse_targets(given, "--server")
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=context, param=parameter) from None


def server_option(function):
    """Adds --server HOST:PORT (repeatable; comma-separated lists too), parsed into a tuple of
    gRPC targets."""
    return click.option("--server", "server", multiple=True, default=[DEFAULT_SERVER],
                        show_default=True, metavar="HOST:PORT", callback=_targets,
                        help=SERVER_HELP)(function)
