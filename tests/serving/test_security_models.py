"""What the server loads: model paths are made absolute and must exist (a clear start-up error
names the path), and only SavedModels are loaded: no pickle, no Keras files, no Python from the
model directory. (A SavedModel is still code: TF ops can read and write files. Serve only models
you trust; see the README.)"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import grpc
import pytest

from serving import Server
from serving import ServingError
from serving.model_config import ModelConfig

SERVING = Path(__file__).resolve().parents[2] / "serving"
# Ways Python code could deserialize objects or run code taken from a file or a request.
FORBIDDEN = re.compile(
    r"\b(pickle|cPickle|cloudpickle|dill|joblib|marshal|shelve|torch)\b|\beval\(|\bexec\(|"
    r"yaml\.(unsafe_)?load\(|allow_pickle\s*=\s*True|\bload_model\(|\bimport_module\(|"
    r"\b__import__\(|keras\.models\.load|tf\.keras\.models|\brunpy\b")
# Dynamic imports of module names written in the source (the package's lazy exports,
# serving.task_codec.TASK_CODECS and serving.client_tokenizer.PORTABLE_TASK_CODECS: a task name
# read from a model only selects one of those entries), never taken from a model or a request.
ALLOWED = {("task_codec.py", "import_module("), ("__init__.py", "import_module("),
           ("client_tokenizer.py", "import_module(")}


class _Payload:
    """Unpickling this creates `marker`: the proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_relative_base_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = ModelConfig("m", Path("models") / ".." / "models" / "m")

    assert config.base_path == tmp_path / "models" / "m"


def test_a_missing_relative_base_path_is_named_in_full(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = Server({"m": "absent/m"}, port=0)

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.message == (f"Could not find base path {tmp_path / 'absent' / 'm'} for "
                                    f"servable m")


def test_a_model_config_file_with_a_missing_base_path_fails_at_startup(tmp_path):
    config = tmp_path / "models.config"
    missing = tmp_path / "gone"
    config.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{missing}" '
                      f'model_platform: "tensorflow" }} }}\n')
    server = Server(model_config_file=str(config), port=0)

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.message == f"Could not find base path {missing} for servable m"


def test_a_missing_model_config_file_is_named(tmp_path):
    server = Server(model_config_file=str(tmp_path / "nope.config"), port=0)

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert str(tmp_path / "nope.config") in raised.value.message


@pytest.mark.parametrize("files", [
    {"model.pkl": "pickle"},
    {"saved_model.pkl": "pickle", "keras_metadata.pb": b""},
    {"model.keras": "pickle", "model.h5": "pickle", "model.joblib": "pickle"},
    {"saved_model.pb": "pickle"},  # a pickle where the SavedModel proto should be
], ids=["pickle", "pickle-and-keras-metadata", "keras-files", "pickle-as-saved-model-pb"])
def test_only_saved_models_are_loaded(tmp_path, files):
    marker = tmp_path / "unpickled"
    version = tmp_path / "base" / "1"
    version.mkdir(parents=True)
    for name, content in files.items():
        data = pickle.dumps(_Payload(marker)) if content == "pickle" else content
        (version / name).write_bytes(data)
    (version / "__init__.py").write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    server = Server({"m": tmp_path / "base"}, port=0, max_num_load_retries=0)

    with pytest.raises(ServingError) as raised:
        server.start()

    assert raised.value.message.startswith("Failed to load version 1 of model 'm'")
    assert not marker.exists()  # nothing from the directory was unpickled or run


def test_serving_code_never_deserializes_objects_or_runs_code_from_data():
    found = []
    for path in sorted(SERVING.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in FORBIDDEN.finditer(code):
                if (path.name, match.group(0)) not in ALLOWED:
                    found.append(f"{path.name}:{number}: {line.strip()}")

    assert not found, "\n".join(found)
