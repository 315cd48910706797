import json

import pytest
import yaml

from tfinetune.errors import ConfigError
from tfinetune.fit_config import FitConfig
from tfinetune.model_source import DEFAULT_MODEL

REQUIRED = {"train": "train.csv", "output_dir": "run"}


def test_defaults_match_the_documented_ones():
    config = FitConfig(**REQUIRED)
    assert (config.model, config.text_column, config.label_column) == (DEFAULT_MODEL, "text",
                                                                       "label")
    assert (config.max_length, config.epochs, config.batch_size, config.eval_batch_size) == (
        128, 3, 32, 64)
    assert (config.learning_rate, config.warmup_ratio, config.schedule) == (5e-5, 0.1, "linear")
    assert (config.weight_decay, config.max_grad_norm, config.warmup_steps) == (0.01, 1.0, None)


def test_yaml_file_is_read_and_explicit_options_override_it(tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump({"train": "a.csv", "output-dir": "out", "epochs": 5,
                                    "learning_rate": 1e-4, "schedule": "cosine"}))
    config = FitConfig.from_options({"epochs": 2, "learning_rate": None}, path)
    assert config.train == "a.csv" and config.output_dir == "out"
    assert config.epochs == 2
    assert config.learning_rate == 1e-4
    assert config.schedule == "cosine"


def test_training_arguments_json_is_accepted_and_unused_fields_are_ignored(tmp_path):
    from transformers import TrainingArguments

    arguments = TrainingArguments(
        output_dir=str(tmp_path / "hf-out"), num_train_epochs=4, per_device_train_batch_size=16,
        per_device_eval_batch_size=8, learning_rate=3e-5, lr_scheduler_type="cosine",
        warmup_ratio=0.2, weight_decay=0.05, seed=7, report_to=[])
    path = tmp_path / "training_args.json"
    path.write_text(arguments.to_json_string())
    config = FitConfig.from_options({"train": "train.csv"}, path)
    assert config.output_dir == str(tmp_path / "hf-out")
    assert (config.epochs, config.batch_size, config.eval_batch_size) == (4, 16, 8)
    assert (config.learning_rate, config.schedule, config.warmup_ratio) == (3e-5, "cosine", 0.2)
    assert (config.weight_decay, config.seed, config.warmup_steps) == (0.05, 7, None)


def test_hugging_face_option_names_are_aliases():
    config = FitConfig.from_options({
        **REQUIRED, "num_train_epochs": 2.0, "per_device_train_batch_size": 4,
        "lr_scheduler_type": "constant_with_warmup", "model_name_or_path": "bert-base-uncased"})
    assert (config.epochs, config.batch_size, config.schedule, config.model) == (
        2, 4, "constant", "bert-base-uncased")


def test_unknown_key_in_config_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text("train: a.csv\noutput_dir: out\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        FitConfig.from_options({}, path)


def test_unknown_key_in_json_that_is_not_a_training_argument_is_an_error(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"output_dir": "o", "not_a_field": 1}))
    with pytest.raises(ConfigError, match="not_a_field"):
        FitConfig.from_options({"train": "t.csv"}, path)


def test_missing_required_options_are_named():
    with pytest.raises(ConfigError, match="--train, --output-dir"):
        FitConfig.from_options({})


@pytest.mark.parametrize("override, message", [
    ({"epochs": 2.5}, "epochs"),
    ({"epochs": 0}, "epochs"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"schedule": "step"}, "schedule"),
    ({"batch_size": "big"}, "batch_size"),
    ({"label_column": "text"}, "different columns"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
])
def test_bad_values_say_what_was_received(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        FitConfig(**{**REQUIRED, **override})
    assert "Received" in str(error.value)


def test_config_saves_and_loads_unchanged(tmp_path):
    config = FitConfig(**REQUIRED, text_pair_column="hypothesis", schedule="polynomial",
                       poly_power=2.0, warmup_steps=10)
    config.save(tmp_path / "fit_config.yaml")
    assert FitConfig.load(tmp_path / "fit_config.yaml") == config


def test_training_differences_ignore_bookkeeping_options():
    config = FitConfig(**REQUIRED)
    assert config.training_differences(FitConfig(**REQUIRED, save_steps=3,
                                                 overwrite_output_dir=True)) == {}
    assert config.training_differences(FitConfig(**REQUIRED, epochs=4)) == {"epochs": (3, 4)}
