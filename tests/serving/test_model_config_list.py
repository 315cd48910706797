"""`ModelConfigList`: reading TF Serving's text `ModelServerConfig`, with its error texts."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from serving.model_config_list import ModelConfigList
from serving.serving_error import ServingError
from serving.version_policy import VersionPolicy
from tests.serving.models import TESTDATA

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def read_error(tmp_path, text: str) -> tuple[grpc.StatusCode, str]:
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ServingError) as raised:
        ModelConfigList.read(path)
    return raised.value.code, raised.value.message


def test_policies_labels_and_platform_are_read(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("""
        model_config_list {
          config { name: "plain" base_path: "/models/plain" model_platform: "tensorflow" }
          config {
            name: "two" base_path: "/models/two/" model_platform: "tensorflow"
            model_version_policy { latest { num_versions: 2 } }
          }
          config { name: "every" base_path: "/models/every" model_platform: "tensorflow"
                   model_version_policy { all {} } }
          config {
            name: "pinned" base_path: "/models/pinned" model_platform: "tensorflow"
            model_version_policy { specific { versions: 1 versions: 3 } }
            version_labels { key: "stable" value: 1 }
            version_labels { key: "canary" value: 3 }
          }
          config { name: "legacy" base_path: "/models/legacy" model_type: TENSORFLOW }
        }""")

    models = ModelConfigList.read(path)

    assert models.names == ["plain", "two", "every", "pinned", "legacy"]
    assert [m.version_policy for m in models] == [
        VersionPolicy.latest(), VersionPolicy.latest(2), VersionPolicy.all(),
        VersionPolicy.specific([1, 3]), VersionPolicy.latest()]
    assert [m.base_path for m in models][:2] == [Path("/models/plain"), Path("/models/two")]
    assert models.models[3].version_labels == {"stable": 1, "canary": 3}
    assert {m.platform for m in models} == {"tensorflow"}


def test_latest_without_num_versions_serves_one_version(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "m" base_path: "/m" '
                    'model_platform: "tensorflow" model_version_policy { latest {} } } }')

    assert ModelConfigList.read(path).models[0].version_policy == VersionPolicy.latest(1)


def test_an_empty_file_lists_no_models(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("")

    assert len(ModelConfigList.read(path)) == 0


def shared_testdata_file(name: str) -> Path:
    path = TESTDATA / name
    if not path.is_file():
        pytest.skip(f"TF Serving testdata {path} is absent (copy tensorflow_serving/servables/"
                    f"tensorflow/testdata there to run this test)")
    return path


def test_tf_servings_bad_model_config_is_an_invalid_protobuf_file():
    path = shared_testdata_file("bad_model_config.txt")

    with pytest.raises(ServingError) as raised:
        ModelConfigList.read(path)

    assert (raised.value.code, raised.value.message) == (
        INVALID, f"Invalid protobuf file: '{path}'")


def test_tf_servings_good_model_config_with_its_placeholders_filled(tmp_path):
    template = shared_testdata_file("good_model_config.txt")
    path = tmp_path / "good_model_config.txt"
    path.write_text(template.read_text()
                    .replace("${TEST_HALF_PLUS_TWO_DIR}", "/models/half_plus_two")
                    .replace("${TEST_HALF_PLUS_THREE_DIR}", "/models/half_plus_three"))

    models = ModelConfigList.read(path)

    assert [(m.name, str(m.base_path)) for m in models] == [
        ("half_plus_two", "/models/half_plus_two"), ("half_plus_three", "/models/half_plus_three")]


@pytest.mark.parametrize("text, message", [
    ("model_config_list { config { name: 'm' } } nonsense", None),
    ("model_config_list { config { name: 'm' unknown_field: 1 } }", None),
    ("model_config_list { config { name: 'm' base_path: '/a' model_platform: 'tensorflow' }"
     " config { name: 'm' base_path: '/b' model_platform: 'tensorflow' } }",
     "Illegal to list model m multiple times in config list"),
    ("model_config_list { config { name: 'm' base_path: 'models/m' "
     "model_platform: 'tensorflow' } }",
     "Expected model m to have an absolute path or URI; got base_path()=models/m"),
    ("model_config_list { config { name: 'm' base_path: '/m' } }",
     "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
     "ModelServerConfig::model_platform."),
    ("model_config_list { config { name: 'm' base_path: '/m' model_type: TENSORFLOW "
     "model_platform: 'tensorflow' } }",
     "Illegal setting both ModelServerConfig::model_type (deprecated) and "
     "ModelServerConfig::model_platform."),
    ("model_config_list { config { name: 'm' base_path: '/m' model_type: OTHER } }",
     "ModelServerConfig::model_type choice 2 not supported."),
    ("custom_model_config { }", "ModelServer does not yet support custom model config."),
], ids=["syntax", "unknown-field", "duplicate-name", "relative-path", "no-platform",
        "type-and-platform", "other-type", "custom-config"])
def test_bad_files_are_invalid_argument_with_tf_servings_text(tmp_path, text, message):
    code, found = read_error(tmp_path, text)

    assert code == INVALID
    assert found == (message or f"Invalid protobuf file: '{tmp_path / 'models.config'}'")


def test_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(ServingError) as raised:
        ModelConfigList.read(tmp_path / "absent.config")

    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert str(tmp_path / "absent.config") in raised.value.message


def test_a_specific_policy_without_versions_is_refused(tmp_path):
    code, message = read_error(tmp_path, "model_config_list { config { name: 'm' "
                                         "base_path: '/m' model_platform: 'tensorflow' "
                                         "model_version_policy { specific { } } } }")

    assert code == INVALID
    assert message.startswith("Model m has a specific version policy without versions.")


def test_remote_base_paths_are_refused_clearly(tmp_path):
    code, message = read_error(tmp_path, "model_config_list { config { name: 'm' "
                                         "base_path: 'gs://bucket/m' "
                                         "model_platform: 'tensorflow' } }")

    assert code == INVALID
    assert message.startswith("Model m has base_path()=gs://bucket/m: only local directories")
