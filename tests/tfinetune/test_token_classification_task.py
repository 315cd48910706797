"""`fit --task token-classification`: label alignment, learning the synthetic NER set, the run
directory, and `evaluate_run` against hand-computed metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfinetune
from tests.token_classification_fixtures import write_jsonl
from tfinetune.errors import DataError
from tfinetune.errors import ModelError
from tfinetune.tag_set import TagSet
from tfinetune.token_classification_examples import TokenClassificationExamples
from tfinetune.token_classification_task import IGNORED
from tfinetune.token_classification_task import TokenClassificationTask
from tfinetune.token_classification_task import first_sub_tokens


def _task(tmp_path, model_dir, rows, **options):
    config = tfinetune.FitConfig(task="token-classification", model=str(model_dir),
                                 train=str(write_jsonl(tmp_path / "train.jsonl", rows)),
                                 output_dir=str(tmp_path / "out"), **options)
    task = TokenClassificationTask(config)
    task.read_data()
    return task


def test_labels_go_to_first_sub_tokens_only(tmp_path, ner_base_model_dir):
    rows = [{"tokens": ["Zoë", "lives", "in", "München", "."],
             "tags": ["B-PER", "O", "O", "B-LOC", "O"]}]
    task = _task(tmp_path, ner_base_model_dir, rows, batch_size=4)
    tokenizer, _ = task.load_model()

    dataset, steps = task.train_dataset(tokenizer)
    features, labels = next(iter(dataset))

    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"][0].numpy().tolist())
    assert tokens == ["[CLS]", "zoe", "lives", "in", "mun", "##chen", ".", "[SEP]"]
    b_per, b_loc, outside = (task.tag_set.id_of(tag) for tag in ("B-PER", "B-LOC", "O"))
    assert labels.numpy().tolist() == [[IGNORED, b_per, outside, outside, b_loc, IGNORED,
                                        outside, IGNORED]]
    assert steps == 1


def test_long_sentences_become_windows_labelled_once_per_word(tmp_path, ner_base_model_dir):
    rows = [{"tokens": ["Alice"], "tags": ["B-PER"]},
            {"tokens": ["in", "Rome", "Berlin", "Berlin"],
             "tags": ["O", "B-LOC", "B-LOC", "I-LOC"]}]
    task = _task(tmp_path, ner_base_model_dir, rows, batch_size=8, max_length=5)
    tokenizer, _ = task.load_model()

    dataset, steps = task.train_dataset(tokenizer)
    features, labels = next(iter(dataset))

    texts = [" ".join(t for t in tokenizer.convert_ids_to_tokens(row) if t != "[PAD]")
             for row in features["input_ids"].numpy().tolist()]
    labels = dict(zip(texts, labels.numpy().tolist()))
    # in rome ber ##lin ber ##lin → windows of 3 pieces; the first Berlin straddles them and
    # is labelled once, on its first piece.
    assert sorted(labels) == ["[CLS] ##lin ber ##lin [SEP]", "[CLS] alice [SEP]",
                              "[CLS] in rome ber [SEP]"]
    assert steps == 1
    o, b_loc, i_loc, b_per = (task.tag_set.id_of(tag) for tag in ("O", "B-LOC", "I-LOC", "B-PER"))
    assert labels["[CLS] in rome ber [SEP]"] == [IGNORED, o, b_loc, b_loc, IGNORED]
    assert labels["[CLS] ##lin ber ##lin [SEP]"] == [IGNORED, IGNORED, i_loc, IGNORED, IGNORED]
    assert labels["[CLS] alice [SEP]"][:3] == [IGNORED, b_per, IGNORED]


def test_first_sub_tokens_skip_words_started_in_an_earlier_window():
    seen: set[int] = set()
    # Window 1: [CLS] w0 w0 w1 [SEP]; window 2: [CLS] w1 w2 w2 [SEP].
    assert first_sub_tokens([None, 0, 0, 1, None], seen) == [(1, 0), (3, 1)]
    assert first_sub_tokens([None, 1, 2, 2, None], seen) == [(2, 2)]
    assert seen == {0, 1, 2}


def test_a_slow_tokenizer_is_refused(tmp_path, ner_base_model_dir):
    import shutil

    model_dir = tmp_path / "slow"
    shutil.copytree(ner_base_model_dir, model_dir)
    (model_dir / "tokenizer.json").unlink()
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "BertTokenizer"
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    task = _task(tmp_path, model_dir, [{"tokens": ["Alice"], "tags": ["B-PER"]}],
                 tokens_column="tokens")
    import transformers

    original = transformers.AutoTokenizer.from_pretrained
    try:
        transformers.AutoTokenizer.from_pretrained = (
            lambda source, **kw: original(source, use_fast=False, **kw))
        with pytest.raises(ModelError, match="needs a fast"):
            task.load_model()
    finally:
        transformers.AutoTokenizer.from_pretrained = original


def test_fit_learns_the_synthetic_set_and_writes_the_run(ner_fit_result):
    run = ner_fit_result.output_dir

    assert ner_fit_result.validation_metrics["f1"] == 1.0
    assert ner_fit_result.history[0]["val_f1"] < 1.0  # it was learnt, not given
    assert ner_fit_result.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert TagSet.load(run).names == tuple(ner_fit_result.labels)
    config = json.loads((run / "config.json").read_text())
    assert config["id2label"] == {str(i): tag for i, tag in enumerate(ner_fit_result.labels)}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "token-classification"
    assert metrics["validation"]["per_type"]["LOC"]["f1"] == 1.0
    assert metrics["validation_rows"] == 40 and metrics["train_rows"] == 160
    assert {"val_f1", "val_precision", "val_recall", "val_accuracy", "val_loss"} <= set(
        metrics["history"][0])
    assert "`B-PER`" in (run / "README.md").read_text()


def test_evaluate_run_matches_hand_computed_metrics(tmp_path, ner_fit_result, ner_data):
    run = ner_fit_result.output_dir
    config = tfinetune.FitConfig.load(run / "fit_config.yaml")
    perfect = TokenClassificationTask.evaluate_run(run, config, ner_data["validation"])
    assert perfect["rows"] == 40
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)

    # The model tags the validation set perfectly; relabel the first PER entity as LOC in
    # the "truth": one true LOC is missed, one predicted PER is spurious.
    sentences = json.loads(json.dumps(ner_data["sentences"]))
    entities = sum(tag.startswith("B-") for s in sentences for tag in s["tags"])
    persons = sum(tag == "B-PER" for s in sentences for tag in s["tags"])
    locations = entities - persons
    first = next(s for s in sentences if "B-PER" in s["tags"])
    start = first["tags"].index("B-PER")
    first["tags"][start] = "B-LOC"
    for i in range(start + 1, len(first["tags"])):
        if first["tags"][i] != "I-PER":
            break
        first["tags"][i] = "I-LOC"
    data = write_jsonl(tmp_path / "relabelled.jsonl", sentences)

    result = TokenClassificationTask.evaluate_run(run, config, data, batch_size=7)

    assert result["precision"] == pytest.approx((entities - 1) / entities)
    assert result["recall"] == pytest.approx((entities - 1) / entities)
    assert result["per_type"]["PER"]["precision"] == pytest.approx((persons - 1) / persons)
    assert result["per_type"]["PER"]["recall"] == 1.0
    assert result["per_type"]["PER"]["support"] == persons - 1
    assert result["per_type"]["LOC"]["recall"] == pytest.approx(locations / (locations + 1))
    assert result["per_type"]["LOC"]["precision"] == 1.0
    assert result["loss"] > perfect["loss"]


def test_evaluate_run_rejects_unknown_entity_types(tmp_path, ner_fit_result):
    run = ner_fit_result.output_dir
    data = write_jsonl(tmp_path / "org.jsonl", [{"tokens": ["ACME"], "tags": ["B-ORG"]}])

    with pytest.raises(DataError, match="Entity type 'ORG' was not seen"):
        TokenClassificationTask.evaluate_run(
            run, tfinetune.FitConfig.load(run / "fit_config.yaml"), data)


def test_examples_of_the_fixture_round_trip_through_conll(ner_data):
    examples = TokenClassificationExamples.read(ner_data["validation"])
    assert examples.tokens == [s["tokens"] for s in ner_data["sentences"]]
    assert examples.tags == [s["tags"] for s in ner_data["sentences"]]


def _tiny_roberta(directory, sentences):
    """A tiny RoBERTa (byte-level BPE trained on `sentences`), saved like a Hub model."""
    import tf_keras
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig
    from transformers import RobertaTokenizerFast
    from transformers import TFRobertaModel

    directory.mkdir()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(s["tokens"]) for s in sentences], vocab_size=300,
                            min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(directory))
    RobertaTokenizerFast(vocab_file=str(directory / "vocab.json"),
                         merges_file=str(directory / "merges.txt")).save_pretrained(directory)
    tf_keras.utils.set_random_seed(0)
    model = TFRobertaModel(RobertaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
        type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2))
    model(model.dummy_inputs)
    model.save_pretrained(directory)
    return directory


def test_byte_level_bpe_models_get_a_prefix_space_for_pre_split_words(tmp_path):
    from tests.token_classification_fixtures import ner_sentences

    model_dir = _tiny_roberta(tmp_path / "roberta", ner_sentences(40, seed=3))
    rows = [{"tokens": ["Zoë", "lives", "in", "München"], "tags": ["B-PER", "O", "O", "B-LOC"]}]
    task = _task(tmp_path, model_dir, rows, batch_size=1, max_length=32)
    tokenizer, model = task.load_model()

    features, labels = next(iter(task.train_dataset(tokenizer)[0]))

    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"][0].numpy().tolist())
    labelled = [token for token, label in zip(tokens, labels[0].numpy()) if label != IGNORED]
    # Each word starts with "Ġ" (its prefix space), as inside running text.
    assert labelled[0].startswith("Ġ") and len(labelled) == 4
    assert [labels[0].numpy()[i] for i, t in enumerate(tokens) if t in labelled] == [
        task.tag_set.id_of(tag) for tag in rows[0]["tags"]]
    loss = model(features, labels=labels).loss
    assert np.isfinite(float(np.mean(loss)))


def test_input_ids_pad_with_the_tokenizer_pad_id(tmp_path):
    from tests.token_classification_fixtures import ner_sentences

    model_dir = _tiny_roberta(tmp_path / "roberta", ner_sentences(40, seed=3))
    rows = [{"tokens": ["Paris"], "tags": ["B-LOC"]},
            {"tokens": ["Alice", "met", "Bob"], "tags": ["B-PER", "O", "B-PER"]}]
    task = _task(tmp_path, model_dir, rows, batch_size=2)
    tokenizer, _ = task.load_model()

    features, _ = next(iter(task.train_dataset(tokenizer)[0]))

    mask = features["attention_mask"].numpy()
    assert tokenizer.pad_token_id == 1 and (mask == 0).any()
    assert set(features["input_ids"].numpy()[mask == 0].tolist()) == {1}


def test_evaluate_run_tags_every_word_of_sentences_longer_than_max_length(
        tmp_path, ner_fit_result, ner_data):
    run = ner_fit_result.output_dir
    sentences = ner_data["sentences"]
    joined = {"tokens": [t for s in sentences[:12] for t in s["tokens"]],
              "tags": [t for s in sentences[:12] for t in s["tags"]]}
    data = write_jsonl(tmp_path / "long.jsonl", [joined])
    config = tfinetune.FitConfig.load(run / "fit_config.yaml")
    from transformers import AutoTokenizer

    pieces = len(AutoTokenizer.from_pretrained(run)(joined["tokens"], is_split_into_words=True)[
        "input_ids"])
    assert pieces > 2 * config.max_length  # three windows or more

    result = TokenClassificationTask.evaluate_run(run, config, data)

    # The model tags these sentences perfectly one by one; joined, every window still is.
    assert result["rows"] == 1
    assert result["recall"] > 0.9 and result["precision"] > 0.9
    entities = sum(tag.startswith("B-") for tag in joined["tags"])
    assert sum(scores["support"] for scores in result["per_type"].values()) == entities
