"""TLS options shared by the commands that call a model server (`predict`, `score`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

_NAMES = ("tls", "root_certificates", "client_certificate", "client_key", "tls_server_name")


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    """How to reach a server over TLS.

    Args:
        tls: Use TLS with the system's root certificates.
        root_certificates: PEM file of the CA(s) that signed the server's certificate.
        client_certificate: PEM file of this client's certificate, for servers that verify
            clients (TF Serving's `client_verify: true`).
        client_key: PEM file of that certificate's private key.
        tls_server_name: The name the server certificates must carry when it is not the
            host of --server (e.g. replicas addressed by IP); implies TLS.
    """

    tls: bool = False
    root_certificates: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None
    tls_server_name: str | None = None

    def __post_init__(self):
        if (self.client_certificate is None) != (self.client_key is None):
            raise click.UsageError(
                "--client-certificate and --client-key go together. Received: "
                f"--client-certificate={self.client_certificate}, --client-key={self.client_key}")

    @classmethod
    def pop_from(cls, options: dict) -> "TlsOptions":
        """Takes the TLS options out of a command's keyword arguments."""
        return cls(**{name: options.pop(name) for name in _NAMES})

    def client_arguments(self) -> dict:
        """Keyword arguments of `serving.Client` (PEM files read as bytes)."""
        def read(path):
            return Path(path).read_bytes() if path is not None else None

        return {"tls": self.tls, "root_certificates": read(self.root_certificates),
                "private_key": read(self.client_key),
                "certificate_chain": read(self.client_certificate),
                "tls_server_name": self.tls_server_name}


def tls_options(function):
    """Adds --tls, --root-certificates, --client-certificate and --client-key."""
    pem = click.Path(exists=True, dir_okay=False, path_type=Path)
    for option in reversed([
        click.option("--tls", is_flag=True, help="Connect with TLS (system root certificates)."),
        click.option("--root-certificates", type=pem, metavar="PEM",
                     help="CA certificates that signed the server's certificate (implies --tls)."),
        click.option("--client-certificate", type=pem, metavar="PEM",
                     help="Client certificate, for servers that verify clients (implies --tls)."),
        click.option("--client-key", type=pem, metavar="PEM",
                     help="Private key of --client-certificate."),
        click.option("--tls-server-name", metavar="NAME",
                     help="Name the server certificates must carry when it is not the host "
                          "in --server, e.g. replicas addressed by IP (implies --tls)."),
    ]):
        function = option(function)
    return function
