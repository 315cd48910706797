"""Reading SQuAD JSON and one-question-a-row files, and the errors naming file and row / qa id."""

from __future__ import annotations

import json

import pytest

from tfinetune.errors import DataError
from tfinetune.question_answering_examples import QuestionAnsweringExamples

CONTEXT = "The café is in Zürich. It opened in 1999."


def squad(qas, context=CONTEXT) -> dict:
    return {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}


def write_json(path, content):
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def test_reads_squad_json(tmp_path):
    path = write_json(tmp_path / "train.json", squad([
        {"id": "a1", "question": "Where is the café?",
         "answers": [{"text": "Zürich", "answer_start": 15},
                     {"text": "in Zürich", "answer_start": 12}]},
        {"id": "a2", "question": "When?", "answers": [{"text": "1999", "answer_start": 36}]},
    ]))
    examples = QuestionAnsweringExamples.read(path)
    assert len(examples) == 2
    first = examples.examples[0]
    assert (first.id, first.question, first.context) == ("a1", "Where is the café?", CONTEXT)
    assert first.answer_texts == ("Zürich", "in Zürich")
    assert first.answer_starts == (15, 12)
    assert first.location == f"{path}:qa a1"
    assert examples.gold_answers == [["Zürich", "in Zürich"], ["1999"]]


def test_reads_jsonl_and_csv_rows_with_custom_columns(tmp_path):
    row = {"q": "Where is the café?", "c": CONTEXT,
           "a": {"text": ["Zürich"], "answer_start": [15]}}
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    csv_file = tmp_path / "train.csv"
    csv_file.write_text('q,c,a\n"Where is the café?","' + CONTEXT + '","'
                        + json.dumps([{"text": "Zürich", "answer_start": 15}]).replace('"', '""')
                        + '"\n', encoding="utf-8")
    for path in (jsonl, csv_file):
        examples = QuestionAnsweringExamples.read(path, question_column="q", context_column="c",
                                                  answers_column="a")
        (example,) = examples.examples
        assert (example.question, example.context) == ("Where is the café?", CONTEXT)
        assert (example.answer_texts, example.answer_starts) == (("Zürich",), (15,))
        assert example.location == (f"{path}:2" if path == csv_file else f"{path}:1")


def test_json_lines_with_a_json_extension_are_rows(tmp_path):
    path = tmp_path / "train.json"
    rows = [{"question": "When?", "context": CONTEXT,
             "answers": {"text": ["1999"], "answer_start": [36]}}] * 2
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert len(QuestionAnsweringExamples.read(path)) == 2


def test_an_answer_not_at_its_start_names_the_qa_id(tmp_path):
    path = write_json(tmp_path / "train.json", squad([
        {"id": "ok", "question": "When?", "answers": [{"text": "1999", "answer_start": 36}]},
        {"id": "bad-7", "question": "Where?",
         "answers": [{"text": "Zürich", "answer_start": 14}]}]))
    with pytest.raises(DataError) as error:
        QuestionAnsweringExamples.read(path)
    assert str(error.value) == (
        "An answer must appear in the context at its answer_start (a character offset). "
        "Expected context[14:20] == 'Zürich'. Received: ' Züric' at "
        f"{path}:qa bad-7")


def test_a_row_error_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"question": "When?", "context": CONTEXT,
             "answers": {"text": ["1999"], "answer_start": [36]}},
            {"question": "", "context": CONTEXT,
             "answers": {"text": ["1999"], "answer_start": [36]}}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(DataError, match=rf"'question' must be a non-empty string\. Received: "
                                        rf"question='' at {path}:2$"):
        QuestionAnsweringExamples.read(path)


def test_unanswerable_questions_need_version_2(tmp_path):
    path = write_json(tmp_path / "train.json", squad([
        {"id": "x1", "question": "Who?", "answers": [], "is_impossible": True}]))
    with pytest.raises(DataError, match=r"--version-2-with-negative .* Received: no answers at "
                                        r".*train\.json:qa x1"):
        QuestionAnsweringExamples.read(path)
    examples = QuestionAnsweringExamples.read(path, version_2_with_negative=True)
    assert examples.gold_answers == [[]]


def test_impossible_question_with_answers_is_an_error(tmp_path):
    path = write_json(tmp_path / "train.json", squad([
        {"id": "x2", "question": "When?", "is_impossible": True,
         "answers": [{"text": "1999", "answer_start": 36}]}]))
    with pytest.raises(DataError, match="is_impossible=true with 1 answers at .*qa x2"):
        QuestionAnsweringExamples.read(path, version_2_with_negative=True)


@pytest.mark.parametrize("answers, message", [
    ({"text": ["1999"], "answer_start": [36, 1]}, "one start per text"),
    ([{"text": "1999"}], "integer 'answer_start'"),
    ("not json", "must hold JSON answers"),
    ([{"text": " ", "answer_start": 0}], "must not be empty"),
])
def test_malformed_answers(tmp_path, answers, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "When?", "context": CONTEXT, "answers": answers})
                    + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{message}.* at {path}:1$"):
        QuestionAnsweringExamples.read(path)


def test_missing_column_and_empty_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "q", "context": "c"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="answers"):
        QuestionAnsweringExamples.read(path)
    empty = write_json(tmp_path / "empty.json", {"data": []})
    with pytest.raises(DataError, match="The validation file .* has no questions"):
        QuestionAnsweringExamples.read(empty, role="validation")
    other = write_json(tmp_path / "other.json", {"rows": []})
    with pytest.raises(DataError, match="one JSON object without 'data'"):
        QuestionAnsweringExamples.read(other)
