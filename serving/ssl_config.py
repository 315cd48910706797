"""`SslConfig`: `--ssl_config_file`, TF Serving's text `SSLConfig` proto
(`config/ssl_config.proto`), turned into gRPC server credentials the way `server.cc`
(`BuildServerCredentialsFromSSLConfigFile`) builds them; `--rest_api_ssl_config_file` (same
format, may be the same file) into the `ssl.SSLContext` of the HTTPS REST API.

The fields hold the PEM text itself, not file paths:

    server_key: "-----BEGIN PRIVATE KEY-----\\n..."
    server_cert: "-----BEGIN CERTIFICATE-----\\n..."
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."   # CA of the client certificates
    client_verify: true                               # require and verify a client certificate
"""

from __future__ import annotations

import dataclasses
import ssl
import tempfile
from pathlib import Path

import grpc
from google.protobuf import text_format

from serving.config_protos import ssl_config_message
from serving.serving_error import ServingError

_PEM_BEGIN = "-----BEGIN "


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclasses.dataclass(frozen=True)
class SslConfig:
    """TLS settings of the gRPC port (and UNIX socket).

    Attributes:
        server_key: PEM private key of the server.
        server_cert: PEM certificate (chain) of the server.
        custom_ca: PEM CA certificate(s) that client certificates must chain to.
        client_verify: Require a client certificate signed by `custom_ca`.
    """

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

    @classmethod
    def from_file(cls, path: str | Path) -> "SslConfig":
        """Reads a text `SSLConfig` file.

        Raises:
            ServingError: INVALID_ARGUMENT when the file cannot be read or parsed, or lacks what
                TLS needs (TF Serving stops with a check failure in those cases).
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise _invalid(f"Could not read the SSL config file {path}: {error}") from None
        proto = ssl_config_message()()
        try:
            text_format.Parse(text, proto)
        except text_format.ParseError as error:
            raise _invalid(f"Invalid SSL config file {path}: not a text SSLConfig proto: "
                           f"{error}") from None
        config = cls(proto.server_key, proto.server_cert, proto.custom_ca, proto.client_verify)
        problem = config._problem() or config._credentials_problem()
        if problem:
            raise _invalid(f"Invalid SSL config file {path}: {problem}")
        return config

    def _problem(self) -> str | None:
        for field in ("server_key", "server_cert"):
            value = getattr(self, field)
            if not value:
                return f"{field} is empty; it must hold the PEM text (not a file path)"
            if _PEM_BEGIN not in value:
                return (f"{field} is not PEM text (no '-----BEGIN'); the SSLConfig fields hold "
                        f"the PEM contents, not file paths")
        if self.custom_ca and _PEM_BEGIN not in self.custom_ca:
            return "custom_ca is not PEM text (no '-----BEGIN')"
        if self.client_verify and not self.custom_ca:
            return ("client_verify is true but custom_ca is empty: client certificates need the "
                    "CA that signs them")
        return None

    def _credentials_problem(self) -> str | None:
        """gRPC checks the PEMs only when a port is added: try on a throwaway server, so that a
        bad key or certificate is reported as such, before any model loads."""
        from concurrent import futures

        probe = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        try:
            probe.add_secure_port("127.0.0.1:0", self.server_credentials())
        except RuntimeError:
            return ("gRPC refused the TLS credentials: server_key or server_cert (or "
                    "custom_ca) is not a valid PEM key/certificate, or the key does not match "
                    "the certificate")
        finally:
            probe.stop(None)
        return None

    def ssl_context(self) -> ssl.SSLContext:
        """The same settings as a server-side `ssl.SSLContext` (HTTPS for the REST API):
        `client_verify` requires a client certificate signed by `custom_ca`; with `custom_ca`
        alone a client certificate is optional, and verified against it when offered.

        Raises:
            ServingError: INVALID_ARGUMENT when the key, certificate or CA is refused.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # ssl loads a key and certificate only from files: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="tfinetune-tls-") as directory:
            cert_file = Path(directory) / "cert.pem"
            key_file = Path(directory) / "key.pem"
            cert_file.write_text(self.server_cert)
            key_file.touch(mode=0o600)
            key_file.write_text(self.server_key)
            try:
                context.load_cert_chain(cert_file, key_file)
            except (ssl.SSLError, OSError) as error:
                raise _invalid(f"The server key or certificate was refused for HTTPS: "
                               f"{error}") from None
        if self.custom_ca:
            try:
                context.load_verify_locations(cadata=self.custom_ca)
            except (ssl.SSLError, ValueError) as error:
                raise _invalid(f"custom_ca was refused for HTTPS: {error}") from None
            context.verify_mode = ssl.CERT_REQUIRED if self.client_verify else ssl.CERT_OPTIONAL
        return context

    def server_credentials(self) -> grpc.ServerCredentials:
        """`grpc.ssl_server_credentials` as TF Serving builds `SslServerCredentialsOptions`:
        the key/cert pair, `custom_ca` as the root certificates when set, and with
        `client_verify` a required, verified client certificate."""
        return grpc.ssl_server_credentials(
            [(self.server_key.encode(), self.server_cert.encode())],
            root_certificates=self.custom_ca.encode() or None,
            require_client_auth=self.client_verify)
