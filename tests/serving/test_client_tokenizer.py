"""`ClientTokenizer` and `Client(tokenizer=...)`: client-side tokenisation for `--portable`
exports, compared with the Hugging Face tokenizer and, through a real server on port 0, with the
default export (tokenizer in the graph) of the same run."""

from __future__ import annotations

import functools
import json
import shutil

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from serving import Client
from serving import Server
from serving.client_tokenizer import ClientTokenizer
from serving.serving_error import ServingError
from tests.conftest import VOCAB
from tests.portable_fixtures import KINDS

TEXTS = ["a good movie", "the plot was AWFUL and boring", "wonderful!", "", "x",
         "it was fine, the acting was not great but the music is brilliant " * 3,
         "Café naïve ünïcode — 🎬 ok", "bad bad film"]
PAIRS = ["the film", "", "fun fun fun " * 8, "?", "great", "a", "dull", "really really good"]
TOLERANCE = 1e-4

WORDS = st.sampled_from([word for word in VOCAB if not word.startswith("##")] +
                        ["GOOD", "Movie", "unknownword", "naïve", "ß", "\t", "[MASK]", "..."])
TEXT = st.one_of(st.lists(WORDS, max_size=40).map(" ".join), st.text(max_size=60))


@functools.lru_cache(maxsize=None)
def hf_tokenizer(run_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run_dir)


@functools.lru_cache(maxsize=None)
def client_tokenizer(path):
    return ClientTokenizer.from_path(path)


# ------------------------------------------------------------------------- the tokenizer

@settings(max_examples=60, deadline=None)
@given(batch=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=6))
def test_encode_equals_the_hugging_face_tokenizer(batch, portable_bases, portable_run_dirs):
    texts, pairs = [a for a, _ in batch], [b for _, b in batch]
    for kind, second in (("single", None), ("pair", pairs)):
        client = client_tokenizer(portable_bases[kind])
        expected = hf_tokenizer(portable_run_dirs[kind])(
            texts, second, padding=True, truncation=True, max_length=32, return_tensors="np")

        encoded = client.encode(texts, second)

        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert encoded[name].dtype == np.int32
            np.testing.assert_array_equal(encoded[name], expected[name], err_msg=name)


def test_from_path_takes_a_base_path_a_version_or_assets_extra(tmp_path, portable_bases):
    base = shutil.copytree(portable_bases["pair"], tmp_path / "pair")
    shutil.copytree(base / "1", base / "3")
    config_file = base / "3" / "assets.extra" / "export_config.json"
    config = json.loads(config_file.read_text())
    config["max_length"] = 8
    config_file.write_text(json.dumps(config))

    assert ClientTokenizer.from_path(base).max_length == 8  # the highest version
    assert ClientTokenizer.from_path(base / "1").max_length == 32
    tokenizer = ClientTokenizer.from_path(base / "1" / "assets.extra")
    assert tokenizer.max_length == 32 and tokenizer.text_pair is True
    assert ClientTokenizer.from_path(base).encode(["good " * 20], ["bad " * 20])[
        "input_ids"].shape == (1, 8)


def test_from_path_names_what_is_missing(tmp_path, portable_bases):
    with pytest.raises(ValueError, match=r"No exported model's tokenizer at .*Expected a model "
                                         r"base path.*Received: no such directory"):
        ClientTokenizer.from_path(tmp_path / "nothing")
    version = shutil.copytree(portable_bases["single"] / "1", tmp_path / "1")
    (version / "assets.extra" / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"No tokenizer.json in the export\. Expected .*"
                                         r"tokenizer\.json.*Received: \[.*vocab\.txt"):
        ClientTokenizer.from_path(version)


def test_encode_refuses_pairs_the_model_does_not_take(portable_bases):
    with pytest.raises(ValueError, match="classifies single texts"):
        ClientTokenizer.from_path(portable_bases["single"]).encode(["a"], ["b"])
    with pytest.raises(ValueError, match="classifies text pairs"):
        ClientTokenizer.from_path(portable_bases["pair"]).encode(["a"])


# ------------------------------------------------------------- through a real gRPC server

@pytest.fixture(scope="module")
def both_exports_server(portable_bases, text_bases):
    models = {f"{kind}-portable": base for kind, base in portable_bases.items()}
    models.update({f"{kind}-text": base for kind, base in text_bases.items()})
    server = Server(models, port=0, file_system_poll_wait_seconds=0).start()
    yield server
    server.stop(grace=5)


def client(server, name, **options) -> Client:
    return Client(f"127.0.0.1:{server.port}", name, timeout=60, **options)


@pytest.mark.parametrize("kind", KINDS)
def test_portable_predictions_match_the_text_export(kind, both_exports_server,
                                                    portable_bases):
    pairs = PAIRS if kind == "pair" else None
    tokenizer = ClientTokenizer.from_path(portable_bases[kind])
    with client(both_exports_server, f"{kind}-portable", tokenizer=tokenizer) as portable, \
            client(both_exports_server, f"{kind}-text") as text:
        received = portable.predict(TEXTS, pairs)
        expected = text.predict(TEXTS, pairs)
        assert portable.problem_type() == text.problem_type()
        assert portable.label_names() == text.label_names()
        assert portable.task() == text.task() == "text-classification"

    assert len(received) == len(expected) == len(TEXTS)
    for got, want in zip(received, expected):
        assert (got.label, got.label_id, got.labels) == (want.label, want.label_id, want.labels)
        for field in ("probabilities", "scores"):
            got_values, want_values = getattr(got, field), getattr(want, field)
            assert (got_values is None) == (want_values is None)
            if want_values is not None:
                assert list(got_values) == list(want_values)
                np.testing.assert_allclose(list(got_values.values()),
                                           list(want_values.values()), atol=TOLERANCE)
        if want.value is not None:
            assert abs(got.value - want.value) <= TOLERANCE
    if kind in ("single", "pair"):
        assert len({p.label for p in expected}) == 2  # the texts reach both labels


def test_without_a_tokenizer_predict_says_what_to_pass(both_exports_server):
    with client(both_exports_server, "single-portable") as portable:
        assert portable.label_names() == ["negative", "positive"]  # needs no tokenizer
        with pytest.raises(ServingError) as raised:
            portable.predict(["a good movie"])

    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "takes token ids" in raised.value.message
    assert "--portable" in raised.value.message and "--tokenizer DIR" in raised.value.message


def test_a_pair_model_without_pairs_is_an_invalid_argument(both_exports_server, portable_bases):
    tokenizer = ClientTokenizer.from_path(portable_bases["pair"])
    with client(both_exports_server, "pair-portable", tokenizer=tokenizer) as portable:
        with pytest.raises(ServingError) as raised:
            portable.predict(["a good movie"])

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "classifies text pairs" in raised.value.message


def test_a_text_model_ignores_the_tokenizer(both_exports_server, portable_bases):
    tokenizer = ClientTokenizer.from_path(portable_bases["single"])
    with client(both_exports_server, "single-text", tokenizer=tokenizer) as text, \
            client(both_exports_server, "single-text") as plain:
        assert text.predict(TEXTS) == plain.predict(TEXTS)


# ------------------------------------------- --pad-to-max-length: one shape for batching servers

def test_pad_to_max_length_pads_every_text_to_the_exports_max_length(portable_bases):
    texts = ["a good movie", "wonderful!", "x", ""]
    longest = ClientTokenizer.from_path(portable_bases["single"]).encode(texts)
    fixed_tokenizer = ClientTokenizer.from_path(portable_bases["single"], pad_to_max_length=True)
    fixed = fixed_tokenizer.encode(texts)
    width = longest["input_ids"].shape[1]
    assert width < fixed_tokenizer.max_length
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert fixed[name].shape == (len(texts), fixed_tokenizer.max_length)
        np.testing.assert_array_equal(fixed[name][:, :width], longest[name])
        assert not fixed[name][:, width:].any()  # padding ids are 0 in the tiny vocabulary


def test_pad_to_max_length_lets_a_batching_server_merge_requests_of_any_length(
        tmp_path, portable_bases, both_exports_server):
    """Without padding, token-id requests of different lengths cannot share a batch (TF
    Serving's batching refuses them with pad_variable_length_inputs off); padded to
    max_length they batch, and the answers equal the unbatched server's."""
    import concurrent.futures

    parameters = tmp_path / "batching.config"
    parameters.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 50000 }\n"
                          "num_batch_threads { value: 1 }\n")
    server = Server({"single": portable_bases["single"]}, port=0,
                    file_system_poll_wait_seconds=0, enable_batching=True,
                    batching_parameters_file=str(parameters)).start()
    texts = [" ".join(["good"] * (1 + i % 7)) + (" bad" * (i % 3)) for i in range(24)]
    tokenizer = ClientTokenizer.from_path(portable_bases["single"], pad_to_max_length=True)
    try:
        with client(server, "single", tokenizer=tokenizer) as batched, \
                client(both_exports_server, "single-portable",
                       tokenizer=ClientTokenizer.from_path(portable_bases["single"])) as plain:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                received = list(pool.map(lambda text: batched.predict([text])[0], texts))
            expected = plain.predict(texts)
    finally:
        server.stop(grace=5)
    for got, want in zip(received, expected):
        assert got.label == want.label
        np.testing.assert_allclose(list(got.probabilities.values()),
                                   list(want.probabilities.values()), atol=TOLERANCE)
