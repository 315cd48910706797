"""`QuestionAnsweringExamples`: the (question, context, answers) rows of a SQuAD-style file.

Two layouts are read:

- SQuAD JSON (`.json` holding one object with `data`): `data[].paragraphs[]` with `context`
  and `qas[]` (`id`, `question`, `answers[{text, answer_start}]`, SQuAD v2's `is_impossible`).
  Locations in errors are `train.json:qa <id>`.
- One row per question (JSON Lines, CSV, TSV, Parquet; see `TableReader`): the question,
  context and answers columns (`--question-column`, `--context-column`, `--answers-column`).
  Answers are Hugging Face datasets' `{"text": [...], "answer_start": [...]}` (in CSV/TSV as
  that JSON) or a list of `{"text", "answer_start"}`. Locations are `train.jsonl:17`.

Every answer must be found in its context at `answer_start` (a character offset). A question
without answers is an error unless `version_2_with_negative` (SQuAD v2: unanswerable).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tfinetune.errors import DataError
from tfinetune.table_reader import TableReader

_PREVIEW = 60


@dataclasses.dataclass(frozen=True)
class QuestionAnsweringExample:
    """One question.

    Attributes:
        id: The SQuAD `id` (rows: the `id` column when present, else the location).
        question: The question text.
        context: The text the answer is cut from.
        answer_texts: The gold answers (empty: unanswerable).
        answer_starts: Their character offsets in `context`.
        location: Where it was read (`file:row` or `file:qa <id>`).
    """

    id: str
    question: str
    context: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]
    location: str


class QuestionAnsweringExamples:
    """The questions of one data file, checked.

    Use `QuestionAnsweringExamples.read(path, ...)`.

    Attributes:
        path: The file read.
        examples: The questions in file order.
    """

    def __init__(self, path: Path, examples: list[QuestionAnsweringExample]) -> None:
        self.path = path
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[QuestionAnsweringExample]:
        return iter(self.examples)

    @property
    def questions(self) -> list[str]:
        return [example.question for example in self.examples]

    @property
    def contexts(self) -> list[str]:
        return [example.context for example in self.examples]

    @property
    def gold_answers(self) -> list[list[str]]:
        return [list(example.answer_texts) for example in self.examples]

    @classmethod
    def read(cls, path: str | os.PathLike, *, question_column: str = "question",
             context_column: str = "context", answers_column: str = "answers",
             version_2_with_negative: bool = False,
             role: str = "training") -> QuestionAnsweringExamples:
        """Reads and checks every question of `path`.

        Args:
            path: SQuAD JSON, or a JSON Lines / CSV / TSV / Parquet file with one question a row.
            question_column, context_column, answers_column: The row layout's columns.
            version_2_with_negative: Questions without answers are allowed (SQuAD v2).
            role: "training", "validation" or "evaluation", for messages.

        Raises:
            DataError: naming the file and row (or qa id) of the first problem.
        """
        path = Path(path)
        name = os.fspath(path)
        squad = _read_squad_json(path, name)
        checker = _Checker(name, version_2_with_negative)
        if squad is not None:
            examples = list(checker.squad_examples(squad))
        else:
            reader = TableReader(path)
            reader.require_columns([question_column, context_column, answers_column])
            examples = [checker.row_example(row.location, row.values, question_column,
                                            context_column, answers_column)
                        for row in reader]
        if not examples:
            raise DataError(f"The {role} file {name} has no questions. Expected at least one "
                            "(question, context, answers) example.")
        return cls(path, examples)


def _read_squad_json(path: Path, name: str) -> dict | None:
    """The parsed SQuAD object when `path` is one JSON document with `data`, else None."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # JSON Lines (or broken): TableReader reports it
    if isinstance(content, dict) and "data" in content:
        return content
    if isinstance(content, dict):
        raise DataError(
            f"{name} is one JSON object without 'data'. Expected SQuAD JSON "
            '({"data": [{"paragraphs": [{"context": ..., "qas": [...]}]}]}) or JSON Lines. '
            f"Received: keys {sorted(content)[:5]}")
    return None


class _Checker:
    def __init__(self, name: str, version_2_with_negative: bool) -> None:
        self.name = name
        self.version_2 = version_2_with_negative

    def squad_examples(self, squad: dict) -> Iterator[QuestionAnsweringExample]:
        data = squad["data"]
        if not isinstance(data, list):
            raise DataError(f"{self.name}: 'data' must be a list of articles. Received: "
                            f"{type(data).__name__}")
        for article_index, article in enumerate(data):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                raise DataError(
                    f"{self.name}: data[{article_index}] must have a 'paragraphs' list. "
                    f"Received: {_preview(article)}")
            for paragraph_index, paragraph in enumerate(paragraphs):
                where = f"{self.name}:data[{article_index}].paragraphs[{paragraph_index}]"
                if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                    raise DataError(f"{where} must have 'context' and a 'qas' list. Received: "
                                    f"{_preview(paragraph)}")
                context = self._text(paragraph.get("context"), "context", where)
                for qa_index, qa in enumerate(paragraph["qas"]):
                    if not isinstance(qa, dict):
                        raise DataError(f"{where}.qas[{qa_index}] must be an object. "
                                        f"Received: {_preview(qa)}")
                    qa_id = str(qa.get("id", f"{paragraph_index}.{qa_index}"))
                    location = f"{self.name}:qa {qa_id}"
                    question = self._text(qa.get("question"), "question", location)
                    answers = qa.get("answers", [])
                    if qa.get("is_impossible") and answers:
                        raise DataError(
                            f"An impossible question must have no answers (SQuAD v2 keeps them "
                            f"in 'plausible_answers'). Received: is_impossible=true with "
                            f"{len(answers)} answers at {location}")
                    texts, starts = self._answer_list(answers, location)
                    yield self._example(qa_id, question, context, texts, starts, location)

    def row_example(self, location: str, values: dict[str, Any], question_column: str,
                    context_column: str, answers_column: str) -> QuestionAnsweringExample:
        question = self._text(values.get(question_column), question_column, location)
        context = self._text(values.get(context_column), context_column, location)
        answers = values.get(answers_column)
        if isinstance(answers, str):
            try:
                answers = json.loads(answers) if answers.strip() else []
            except json.JSONDecodeError as error:
                raise DataError(
                    f"Column '{answers_column}' must hold JSON answers "
                    '({"text": [...], "answer_start": [...]}). Received: '
                    f"{_preview(answers)} ({error.msg}) at {location}") from None
        if isinstance(answers, dict):
            texts, starts = answers.get("text"), answers.get("answer_start")
            if not isinstance(texts, list) or not isinstance(starts, list) or (
                    len(texts) != len(starts)):
                raise DataError(
                    f"Column '{answers_column}' must be {{\"text\": [...], \"answer_start\": "
                    f"[...]}} with one start per text. Received: {_preview(answers)} at "
                    f"{location}")
            answers = [{"text": text, "answer_start": start}
                       for text, start in zip(texts, starts)]
        elif answers is None:
            answers = []
        texts, starts = self._answer_list(answers, location, answers_column)
        row_id = values.get("id")
        return self._example(str(row_id) if row_id not in (None, "") else location, question,
                             context, texts, starts, location)

    def _answer_list(self, answers: Any, location: str,
                     column: str = "answers") -> tuple[list[str], list[int]]:
        if not isinstance(answers, list):
            raise DataError(
                f"'{column}' must be a list of {{\"text\", \"answer_start\"}} or "
                f"{{\"text\": [...], \"answer_start\": [...]}}. Received: {_preview(answers)} "
                f"at {location}")
        texts, starts = [], []
        for answer in answers:
            text = answer.get("text") if isinstance(answer, dict) else None
            start = answer.get("answer_start") if isinstance(answer, dict) else None
            if isinstance(start, float) and start.is_integer():
                start = int(start)
            if isinstance(start, str) and start.strip().isdigit():
                start = int(start)
            if not isinstance(text, str) or isinstance(start, bool) or not isinstance(start, int):
                raise DataError(
                    f"Each answer must have a string 'text' and an integer 'answer_start'. "
                    f"Received: {_preview(answer)} at {location}")
            texts.append(text)
            starts.append(start)
        return texts, starts

    def _example(self, qa_id: str, question: str, context: str, texts: list[str],
                 starts: list[int], location: str) -> QuestionAnsweringExample:
        if not texts and not self.version_2:
            raise DataError(
                "Every question needs an answer. Expected at least one answer (or "
                "--version-2-with-negative for unanswerable questions). Received: no answers "
                f"at {location}")
        for text, start in zip(texts, starts):
            if not text.strip():
                raise DataError(f"An answer must not be empty. Received: text={text!r} at "
                                f"{location}")
            found = context[start:start + len(text)] if start >= 0 else ""
            if found != text:
                raise DataError(
                    "An answer must appear in the context at its answer_start (a character "
                    f"offset). Expected context[{start}:{start + len(text)}] == {text!r}. "
                    f"Received: {found!r} at {location}")
        return QuestionAnsweringExample(qa_id, question, context, tuple(texts), tuple(starts),
                                        location)

    @staticmethod
    def _text(value: Any, field: str, location: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"'{field}' must be a non-empty string. Received: {field}="
                            f"{_preview(value)} at {location}")
        return value


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW - 3] + "..."
