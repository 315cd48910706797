"""`TokenClassificationExamples` and `TagSet`: CoNLL and JSON Lines NER files, checked with
file:line errors."""

from __future__ import annotations

import json

import pytest

from tfinetune.errors import DataError
from tfinetune.tag_set import TagSet
from tfinetune.tag_set import is_tag
from tfinetune.token_classification_examples import TokenClassificationExamples

CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_conll_2003_layout_token_first_column_tag_last_column(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL_2003, encoding="utf-8")

    examples = TokenClassificationExamples.read(path)

    assert examples.tokens == [["EU", "rejects", "German", "call", "."],
                               ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert examples.tags == [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert examples.locations == [f"{path}:3", f"{path}:9", f"{path}:14"]
    # O first, then B-/I- per type, types sorted; I-X added where only B-X was seen.
    assert examples.tag_set.names == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG",
                                      "I-ORG", "B-PER", "I-PER")
    assert examples.tag_ids()[1] == [7, 8]


@pytest.mark.parametrize("suffix", [".iob", ".txt"])
def test_two_column_files_with_tabs_and_windows_line_ends(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes("Zoë\tB-PER\r\nlives\tO\r\n\r\n\r\nMünchen\tB-LOC\r\n".encode())

    examples = TokenClassificationExamples.read(path)

    assert examples.tokens == [["Zoë", "lives"], ["München"]]
    assert examples.tags == [["B-PER", "O"], ["B-LOC"]]


def test_jsonl_with_configured_columns(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"words": ["Alice", "met", "Bob"], "ner": ["B-PER", "O", "B-PER"]},
            {"words": ["in", "New", "York"], "ner": ["O", "B-LOC", "I-LOC"]}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    examples = TokenClassificationExamples.read(path, tokens_column="words", tags_column="ner")

    assert examples.tokens == [row["words"] for row in rows]
    assert examples.tags == [row["ner"] for row in rows]
    assert examples.locations == [f"{path}:1", f"{path}:2"]
    assert examples.tag_set.names == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")


def _jsonl(tmp_path, rows, name="train.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_count_mismatch_names_file_line_and_counts(tmp_path):
    path = _jsonl(tmp_path, [{"tokens": ["a"], "tags": ["O"]},
                             {"tokens": ["Alice", "Smith"], "tags": ["B-PER"]}])

    with pytest.raises(DataError) as error:
        TokenClassificationExamples.read(path)

    assert str(error.value).endswith(
        f"Received: tags=['B-PER'] (1 tag for 2 tokens) at {path}:2")


@pytest.mark.parametrize("tag", ["PER", "B_PER", "b-PER", "B-", "E-PER", "S-LOC"])
def test_a_tag_that_is_not_bio_is_an_error_with_its_line(tmp_path, tag):
    path = tmp_path / "train.conll"
    path.write_text(f"Alice B-PER\n\nBob {tag}\n", encoding="utf-8")

    with pytest.raises(DataError, match=rf"Received: tag='{tag}' at {path}:3$"):
        TokenClassificationExamples.read(path)


def test_a_jsonl_tag_that_is_not_bio_names_the_column(tmp_path):
    path = _jsonl(tmp_path, [{"tokens": ["Alice"], "tags": ["PERSON"]}])

    with pytest.raises(DataError, match=rf"Received: tags='PERSON' at {path}:1$"):
        TokenClassificationExamples.read(path)


def test_a_conll_line_without_a_tag(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("Alice B-PER\nlonely\n", encoding="utf-8")

    with pytest.raises(DataError, match=rf"needs a token and a tag.*'lonely' at {path}:2$"):
        TokenClassificationExamples.read(path)


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_a_file_without_sentences(tmp_path, content):
    path = tmp_path / "train.conll"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(DataError, match="has no sentences"):
        TokenClassificationExamples.read(path)


def test_only_o_tags_is_an_error(tmp_path):
    path = _jsonl(tmp_path, [{"tokens": ["a", "b"], "tags": ["O", "O"]}])

    with pytest.raises(DataError, match="at least one entity type"):
        TokenClassificationExamples.read(path)


def test_bad_jsonl_cells(tmp_path):
    with pytest.raises(DataError, match=r"must hold a list of strings.*tokens='a b' at .*:1$"):
        TokenClassificationExamples.read(_jsonl(tmp_path, [{"tokens": "a b", "tags": ["O"]}]))
    with pytest.raises(DataError, match=r"Empty sentence"):
        TokenClassificationExamples.read(_jsonl(tmp_path, [{"tokens": [], "tags": []}]))
    with pytest.raises(DataError, match=r"Empty token.*token 2 = ' ' .* at .*:1$"):
        TokenClassificationExamples.read(
            _jsonl(tmp_path, [{"tokens": ["a", " "], "tags": ["B-X", "O"]}]))
    with pytest.raises(DataError, match=r"Column 'tags' not found"):
        TokenClassificationExamples.read(_jsonl(tmp_path, [{"tokens": ["a"], "ner": ["O"]}]))


def test_validation_tags_must_use_the_training_types(tmp_path):
    train = TokenClassificationExamples.read(
        _jsonl(tmp_path, [{"tokens": ["Alice"], "tags": ["B-PER"]}]))
    path = _jsonl(tmp_path, [{"tokens": ["Alice", "Smith"], "tags": ["I-PER", "I-PER"]},
                             {"tokens": ["Paris"], "tags": ["B-LOC"]}], "validation.jsonl")

    with pytest.raises(DataError) as error:
        TokenClassificationExamples.read(path, tag_set=train.tag_set, role="validation")

    assert "Entity type 'LOC' was not seen in the training file" in str(error.value)
    assert str(error.value).endswith(f"tag 'B-LOC' (token 1) in the sentence at {path}:2")


def test_missing_file_and_unsupported_extension(tmp_path):
    with pytest.raises(DataError, match="File not found"):
        TokenClassificationExamples.read(tmp_path / "missing.conll")
    with pytest.raises(DataError, match="Unsupported file type '.csv'"):
        TokenClassificationExamples.read(tmp_path / "train.csv")


def test_tag_set_round_trip_and_checks(tmp_path):
    tags = TagSet(["PER", "LOC"])
    tags.save(tmp_path)

    assert json.loads((tmp_path / "labels.json").read_text())["labels"] == [
        "O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert TagSet.load(tmp_path) == tags
    assert tags.id2label[3] == "B-PER" and tags.label2id["I-LOC"] == 2
    with pytest.raises(DataError, match="Invalid tag order"):
        TagSet.from_names(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert [is_tag(t) for t in ("O", "B-X", "I-MISC", "X", "B-", "o", None)] == [
        True, True, True, False, False, False, False]
