"""`serving.Client` over several replicas, through real gRPC channels to real servers on
127.0.0.x: calls are spread over every replica (given as a list, comma-separated, gRPC's
`ipv4:` list, or one DNS name resolving to several addresses), a transient failure is retried
on another replica, one replica stopped mid-run loses no call, TLS works across replicas, and
bad addresses are refused."""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import Client
from serving import Server
from serving import ServingError
from serving.client import TRANSIENT_CODES
from serving.server_targets import parse_targets
from tests.serving.dns_responder import DnsResponder
from tests.serving.test_ssl import pki  # noqa: F401  (module fixture: a CA and certificates)
from tests.serving.test_ssl import write_ssl_config

TEXTS = ["good", "bad", "a good film", "a bad plot", "good good", "not bad"]


class CountedServer:
    """A real `Server` of one model on `host` whose model lookups (one per Predict or
    GetModelMetadata) are counted, so a test can tell which replica served what.

    Args:
        base: The model's base path.
        host: Address to bind.
        port: Port (0: any free one).
        name: The model's name.
        **options: More `Server` options (e.g. `ssl_config_file`).
    """

    def __init__(self, base, host: str = "127.0.0.1", port: int = 0, name: str = "text",
                 **options) -> None:
        self.server = Server({name: base}, host=host, port=port,
                             file_system_poll_wait_seconds=0, **options).start()
        self.host = host
        self.predicts = 0
        self.on_predict = None  # called with the count after each counted lookup
        self._lock = threading.Lock()
        manager = self.server.model_manager
        lookup = manager.servable

        def counting_lookup(model_spec):
            with self._lock:
                self.predicts += 1
                count = self.predicts
            if self.on_predict is not None:
                self.on_predict(count)
            return lookup(model_spec)

        manager.servable = counting_lookup

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=0)


@pytest.fixture
def two_servers(model_bases):
    servers = [CountedServer(model_bases["text"]), CountedServer(model_bases["text"])]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def expected(model_bases):
    """Predictions of one server alone, the reference of every spread run."""
    server = Server({"text": model_bases["text"]}, port=0, file_system_poll_wait_seconds=0)
    server.start()
    try:
        with Client(server.address, "text") as client:
            return {text: client.predict([text])[0] for text in TEXTS}
    finally:
        server.stop(grace=0)


class RefusingServer:
    """A PredictionService that is up but answers every call with UNAVAILABLE (a replica
    draining, or a proxy with no backend; or `code`): its gRPC connection is READY, so only
    the client can steer the retry elsewhere. Counts the calls."""

    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
                 message: str = "draining") -> None:
        self.calls = 0
        lock = threading.Lock()
        owner = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802 (gRPC method name)
                with lock:
                    owner.calls += 1
                context.abort(code, message)

            GetModelMetadata = Predict  # noqa: N815

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(),
                                                                            self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(grace=0).wait()


def predict_each(client, texts):
    return {text: client.predict([text])[0] for text in texts}


def warm_up(client, servers, seconds: float = 30.0) -> None:
    """Calls until every server answered once (gRPC connects to the addresses of one channel
    in the background; round_robin uses those that are connected), then zeroes the counts."""
    deadline = time.monotonic() + seconds
    while min(server.predicts for server in servers) == 0 and time.monotonic() < deadline:
        client.predict(["warm up"])
    for server in servers:
        server.predicts = 0


# ------------------------------------------------------------------------------ addresses


@pytest.mark.parametrize("value, targets", [
    ("localhost:8500", ("localhost:8500",)),
    ("10.0.0.1:8500,10.0.0.2:8500", ("10.0.0.1:8500", "10.0.0.2:8500")),
    (" a:1 , b:2 ", ("a:1", "b:2")),
    (["a:1", "b:2,c:3"], ("a:1", "b:2", "c:3")),
    ("[::1]:8500", ("[::1]:8500",)),
    ("dns:///tfserving-headless.default.svc:8500", ("dns:///tfserving-headless.default.svc:8500",)),
    ("dns://10.0.0.53:53/replicas.test:8500", ("dns://10.0.0.53:53/replicas.test:8500",)),
    ("ipv4:127.0.0.1:1,127.0.0.1:2", ("ipv4:127.0.0.1:1,127.0.0.1:2",)),  # gRPC's own list
    ("ipv6:[::1]:1,[::1]:2", ("ipv6:[::1]:1,[::1]:2",)),
    ("unix:/tmp/tfserving.sock", ("unix:/tmp/tfserving.sock",)),
])
def test_accepted_address_forms(value, targets):
    assert parse_targets(value) == targets


@pytest.mark.parametrize("value, problem", [
    ("", "Invalid --server address '': it is empty"),
    ([], "Expected --server HOST:PORT"),
    ("a:1,,b:2", "Invalid --server address '': it is empty"),
    ("a:1,", "Invalid --server address '': it is empty"),
    ("localhost", "Invalid --server address 'localhost': no port in 'localhost'"),
    ("localhost:http", "'localhost:http' is not HOST:PORT"),
    ("a:1,b:99999", "Invalid --server address 'b:99999': port 99999 is not in 1..65535"),
    ("a:0", "port 0 is not in 1..65535"),
    ("::1:8500", "'::1:8500' is not HOST:PORT"),
    ("dns:///", "nothing follows 'dns:'"),
    ("dns:///name", "no port in 'name'"),
    ("ipv4:127.0.0.1:1,", "no port in ''"),
])
def test_bad_addresses_are_refused_naming_the_option_and_value(value, problem):
    with pytest.raises(ValueError) as raised:
        parse_targets(value, "--server")
    assert problem in str(raised.value)
    assert str(raised.value).endswith(f"Received: --server={value!r}")


def test_client_refuses_bad_targets_before_connecting():
    with pytest.raises(ValueError, match=r"Invalid target address '': it is empty.*"
                                         r"Received: target='127.0.0.1:1,'"):
        Client("127.0.0.1:1,", "text")
    with pytest.raises(ValueError, match=r"Expected target HOST:PORT.*Received: target=\[\]"):
        Client([], "text")


# ------------------------------------------------------------------------------ spreading


@pytest.mark.parametrize("form", ["list", "commas", "ipv4"])
def test_calls_are_spread_over_every_replica(two_servers, expected, form):
    first, second = two_servers
    target = {"list": [first.target, second.target],
              "commas": f"{first.target},{second.target}",
              "ipv4": f"ipv4:{first.target},{second.target}"}[form]
    with Client(target, "text") as client:
        warm_up(client, two_servers)  # also reads the signature (counted too)
        predictions = [client.predict([text])[0] for text in TEXTS * 5]
    assert predictions == [expected[text] for text in TEXTS * 5]
    # Sequential calls alternate (list, commas) or follow gRPC's round_robin (ipv4:).
    assert first.predicts + second.predicts == 30
    assert min(first.predicts, second.predicts) >= 10, (first.predicts, second.predicts)


def test_a_name_resolving_to_several_addresses_is_spread_over_all(model_bases, expected):
    """As a Kubernetes headless Service: one DNS name, one A record per replica. gRPC resolves
    it (here through a DNS server given in the target's authority) and round-robins."""
    first = CountedServer(model_bases["text"], host="127.0.0.1")
    try:
        second = CountedServer(model_bases["text"], host="127.0.0.2", port=first.port)
    except ServingError as error:
        first.stop()
        pytest.skip(f"cannot bind 127.0.0.2 here: {error}")
    try:
        with DnsResponder("replicas.test", ["127.0.0.1", "127.0.0.2"]) as dns:
            target = f"dns://{dns.authority}/replicas.test:{first.port}"
            with Client(target, "text") as client:
                assert client.targets == (target,)
                warm_up(client, [first, second])  # resolved; both subchannels connect
                predictions = [client.predict([text])[0] for text in TEXTS * 5]
            assert ("replicas.test", 1) in dns.queries
    finally:
        first.stop()
        second.stop()
    assert predictions == [expected[text] for text in TEXTS * 5]
    assert min(first.predicts, second.predicts) >= 10, (first.predicts, second.predicts)


def test_dns_scheme_and_plain_host_name_reach_a_server(model_bases, expected):
    server = CountedServer(model_bases["text"])
    try:
        for target in (f"dns:///localhost:{server.port}", f"localhost:{server.port}"):
            with Client(target, "text") as client:
                assert client.predict(["good"])[0] == expected["good"]
    finally:
        server.stop()


# -------------------------------------------------------------------------------- retries


def test_a_retry_goes_to_another_replica_at_once(model_bases, expected, monkeypatch, caplog):
    """One replica is up but answers UNAVAILABLE. With one retry allowed every call (from 4
    threads at once, so plain rotation would often hand a retry back to the refusing replica)
    still succeeds: each retry goes to the other replica, at once (no backoff)."""
    monkeypatch.setattr("serving.replica_set._FIRST_AVOIDANCE_SECONDS", 0.0)  # keep trying it
    caplog.set_level(logging.WARNING, logger="serving.client")
    refusing, healthy = RefusingServer(), CountedServer(model_bases["text"])
    texts = TEXTS * 10
    try:
        with Client([refusing.target, healthy.target], "text", retries=1) as client:
            with futures.ThreadPoolExecutor(max_workers=4) as pool:
                predictions = list(pool.map(lambda text: client.predict([text])[0], texts))
    finally:
        refusing.stop()
        healthy.stop()
    assert predictions == [expected[text] for text in texts]
    assert refusing.calls >= 15  # about every other call went to it first
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == refusing.calls
    assert all(f"on {refusing.target} failed with UNAVAILABLE (draining); retrying on "
               f"{healthy.target} in 0.00 s" in message for message in retries), retries


def test_a_failed_replica_is_avoided_for_a_while(model_bases, expected, monkeypatch):
    monkeypatch.setattr("serving.replica_set._FIRST_AVOIDANCE_SECONDS", 30.0)
    refusing, healthy = RefusingServer(), CountedServer(model_bases["text"])
    try:
        with Client([refusing.target, healthy.target], "text", retries=1) as client:
            predictions = predict_each(client, TEXTS * 3)
    finally:
        refusing.stop()
        healthy.stop()
    assert predictions == {text: expected[text] for text in TEXTS}
    assert refusing.calls == 1


def test_not_found_on_one_replica_is_tried_on_the_others(model_bases, expected, caplog):
    """A replica without the model (loading it, or unloading it while it stops) answers
    NOT_FOUND: with several replicas the call goes to another one at once. NOT_FOUND from
    every replica is the answer (no backoff, no more retries)."""
    caplog.set_level(logging.WARNING, logger="serving.client")
    message = "Servable not found for request: Latest(text)"
    lacking = RefusingServer(grpc.StatusCode.NOT_FOUND, message)
    also_lacking = RefusingServer(grpc.StatusCode.NOT_FOUND, message)
    healthy = CountedServer(model_bases["text"])
    try:
        with Client([lacking.target, healthy.target], "text", retries=1) as client:
            assert predict_each(client, TEXTS) == expected
        assert lacking.calls == 1  # then avoided
        with Client([lacking.target, also_lacking.target], "text", retries=5) as client:
            with pytest.raises(ServingError) as raised:
                client.predict(["good"])
    finally:
        for server in (lacking, also_lacking, healthy):
            server.stop()
    assert (raised.value.code, raised.value.message) == (grpc.StatusCode.NOT_FOUND, message)
    assert also_lacking.calls == 1 and lacking.calls == 2  # each tried once, then given up
    assert all(r.getMessage().endswith(" in 0.00 s") for r in caplog.records
               if "retrying" in r.getMessage())


def test_a_replica_stopped_mid_run_loses_no_call(two_servers, expected):
    """4 threads call through one client; one replica is stopped (grace 0: its calls in
    flight are cut) after it served 8 Predicts. Every call returns the right prediction."""
    doomed, survivor = two_servers
    stopped = threading.Event()

    def stop_after(count):
        if count == 8 and not stopped.is_set():
            stopped.set()
            threading.Thread(target=doomed.stop).start()

    doomed.on_predict = stop_after
    texts = TEXTS * 20
    with Client([doomed.target, survivor.target], "text", retries=3,
                retry_codes=TRANSIENT_CODES, timeout=10) as client:
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda text: client.predict([text])[0], texts))
        survivor_before = survivor.predicts
        after = [client.predict([text])[0] for text in TEXTS]  # all on the survivor now
    assert stopped.is_set()
    assert results == [expected[text] for text in texts]
    assert after == [expected[text] for text in TEXTS]
    assert doomed.predicts >= 8
    assert survivor.predicts == survivor_before + len(TEXTS)
    assert doomed.predicts + survivor_before >= len(texts)


def test_every_replica_down_is_unavailable_after_trying_each(caplog):
    caplog.set_level(logging.WARNING, logger="serving.client")
    dead = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    with Client(dead, "text", retries=3, timeout=5) as client:
        with pytest.raises(ServingError) as raised:
            client.predict(["good"])
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3
    assert {message.split(" failed")[0].split(" on ")[1] for message in retries} == set(dead)
    assert retries[0].endswith("in 0.00 s")  # the second replica at once
    assert not retries[1].endswith("in 0.00 s")  # then backoff: both were tried


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ TLS


def test_tls_across_replicas_and_server_name_override(model_bases, expected, tmp_path,
                                                      pki):  # noqa: F811
    """Same credentials for every replica. The certificate names localhost and 127.0.0.1: a
    replica reached at 127.0.0.2 is accepted only with tls_server_name."""
    config = write_ssl_config(tmp_path / "ssl.config", server_key=pki["server.key"],
                              server_cert=pki["server.pem"])
    first = CountedServer(model_bases["text"], ssl_config_file=str(config))
    try:
        second = CountedServer(model_bases["text"], host="127.0.0.2",
                               ssl_config_file=str(config))
    except ServingError as error:
        first.stop()
        pytest.skip(f"cannot bind 127.0.0.2 here: {error}")
    try:
        with Client([f"localhost:{first.port}", f"127.0.0.1:{first.port}"], "text",
                    root_certificates=pki["ca.pem"]) as client:
            assert predict_each(client, TEXTS) == expected
        with Client([f"127.0.0.1:{first.port}", second.target], "text",
                    root_certificates=pki["ca.pem"], tls_server_name="localhost") as client:
            assert predict_each(client, TEXTS * 2) == expected
        assert second.predicts >= len(TEXTS) - 1
        with Client(second.target, "text", root_certificates=pki["ca.pem"], retries=0,
                    timeout=5) as client, pytest.raises(ServingError) as raised:
            client.predict(["good"])
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        first.stop()
        second.stop()
