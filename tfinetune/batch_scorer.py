"""`BatchScorer`: score a data file through a model server, in bounded memory, in input order.

    scorer = BatchScorer(ScoreConfig(input="reviews.csv", output="scored.csv", model_name="clf"))
    with serving.Client("localhost:8500", "clf") as client:
        result = scorer.score(client)

The input is streamed in batches of `batch_size` rows; up to `concurrency` Predict requests
are in flight at once (a thread pool and a window of futures), so memory is bounded by
`concurrency x batch_size` rows whatever the file size. With `sort_by_length` the input is
read in chunks of `concurrency x batch_size` rows instead, and each chunk is sent as
`concurrency` requests of rows of similar text length (a model pads its batch to the longest
row, so this cuts the padding; measured in benchmarks/score_throughput.py); rows are still
written in input order, and a failed request fails its (length-grouped) rows. Rows are
written strictly in input order with every input column, then, by the model's problem type
(`client.problem_type()`):

- single-label: the predicted `label`, one `prob_<label>` column per label;
- multi-label: the predicted `labels` (joined with `label_delimiter` in CSV/TSV/Parquet, a
  list in JSON Lines), one `score_<label>` column per label;
- regression: the predicted `value`;
- token classification: `entities` (a list in JSON Lines, JSON text otherwise);
- question answering (question and context columns): `answer`, `answer_start`,
  `answer_end`, `answer_score`;
- seq2seq: `generated_text`;

and `error`. A predicted column whose name the input already has is prefixed `predicted_`.

A request that fails with a transient error is retried by the client (`serving.Client` with
`retry_codes=TRANSIENT_CODES`: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED,
with exponential backoff). If it still fails the rows are written with `error` set ("CODE:
message"), never dropped. When a batch fails with a code that one bad row can cause
(INVALID_ARGUMENT, RESOURCE_EXHAUSTED, INTERNAL) it is split in halves and re-sent, so only the
rows that fail on their own get an error. UNAVAILABLE (or CANCELLED: a server shutting down)
after the retries means the server is gone, not that the rows are bad: the run stops
(`ScoringError`) instead of failing every remaining row.

Interrupted runs resume. Rows are written in input order to `OUTPUT.partial` (see
`TableWriter`), which is kept when the run stops or is killed; with `config.resume` the next
run keeps its complete rows, checks that their input columns match the input's first rows,
counts them into the metrics and sends only the rows after them. Without `resume` (or
`overwrite`) an existing output or partial output is refused.

With `label_column`, metrics are computed as rows are written: a confusion matrix
(single-label) or per-label counts (multi-label) in constant memory; regression keeps the true
and predicted values (two float arrays of the row count, 16 bytes a row), because Pearson and
Spearman correlations need them all.

This module does not import `serving`: any client with `label_names()` and
`predict(texts, text_pairs)` works (see `serving.Client`), plus `problem_type()` for
multi-label and regression models (a client without it is taken as single-label); errors
carrying a `code` attribute with a `.name` (like `serving.ServingError`) are reported as
`CODE: message`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from tfinetune.classification_metrics import ClassificationMetrics
from tfinetune.errors import ConfigError
from tfinetune.errors import DataError
from tfinetune.errors import ScoringError
from tfinetune.label_set import label_name
from tfinetune.multi_label_metrics import MultiLabelMetrics
from tfinetune.regression_metrics import RegressionMetrics
from tfinetune.score_config import ScoreConfig
from tfinetune.score_result import ScoreResult
from tfinetune.table_reader import TableReader
from tfinetune.table_row import TableRow
from tfinetune.table_writer import PARTIAL_SUFFIX
from tfinetune.table_writer import TableWriter
from tfinetune.text_classification_examples import parse_label_list
from tfinetune.text_classification_examples import parse_number

logger = logging.getLogger(__name__)

LABEL_COLUMN = "label"
LABEL_COLUMN_IF_TAKEN = "predicted_label"
PROBABILITY_PREFIX = "prob_"
LABELS_COLUMN = "labels"
LABELS_COLUMN_IF_TAKEN = "predicted_labels"
SCORE_PREFIX = "score_"
VALUE_COLUMN = "value"
VALUE_COLUMN_IF_TAKEN = "predicted_value"
SINGLE_LABEL = "single-label"
MULTI_LABEL = "multi-label"
REGRESSION = "regression"
TOKEN_CLASSIFICATION = "token-classification"
QUESTION_ANSWERING = "question-answering"
SEQ2SEQ = "seq2seq"
#: The kinds of model `score` handles: a text classifier's problem type, or another task.
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION,
                 QUESTION_ANSWERING, SEQ2SEQ)
#: Columns added for the other tasks' predictions (a clash gets the `predicted_` prefix).
TASK_COLUMNS = {
    TOKEN_CLASSIFICATION: ("entities",),
    QUESTION_ANSWERING: ("answer", "answer_start", "answer_end", "answer_score"),
    SEQ2SEQ: ("generated_text",),
}
#: Input columns when `--text-column`/`--text-pair-column` are not given.
DEFAULT_TEXT_COLUMNS = {QUESTION_ANSWERING: ("question", "context")}
ERROR_COLUMN = "error"
# Status codes a single bad row can cause: the batch is split to isolate it.
SPLIT_ON_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL"})
# Status codes of a server that is down or shutting down (still, after the client's retries):
# the run stops, to be resumed, instead of failing every remaining row.
STOP_ON_CODES = frozenset({"UNAVAILABLE", "CANCELLED"})
_UNKNOWN_LABEL_EXAMPLES = 5

# Per row: the prediction, or the error message of a row that could not be scored.
_Outcome = Any


class _Client(Protocol):
    def label_names(self) -> list[str]: ...

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list: ...


class BatchScorer:
    """Scores every row of `config.input` through a model server into `config.output`.

    Constructing it checks the input file and its columns (nothing is sent yet).

    Args:
        config: The scoring options.

    Raises:
        DataError: The input file is missing, empty, unreadable or lacks a named column.
        ConfigError: The output (or the partial output of an interrupted run) exists and
            neither `resume` nor `overwrite` is set.
    """

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        self.partial_path = config.output.with_name(config.output.name + PARTIAL_SUFFIX)
        self._check_existing_output()
        self.reader = TableReader(config.input)
        self.reader.require_columns(
            [config.text_column, config.text_pair_column, config.label_column])
        if config.text_column is None and not set(
                DEFAULT_TEXT_COLUMNS[QUESTION_ANSWERING]) <= set(self.reader.columns):
            # Without a question and a context column only a `text` model can use the file.
            self.reader.require_columns(["text"])
        self.text_column = config.text_column or "text"
        self.text_pair_column = config.text_pair_column

    @property
    def total_rows(self) -> int | None:
        """Number of input rows when known up front (Parquet), else None."""
        return self.reader.num_rows

    def score(
        self, client: _Client, progress: Callable[[int], None] | None = None
    ) -> ScoreResult:
        """Scores the input through `client` and writes the output file.

        The output appears only when every row is written (see `TableWriter`); failed rows
        are in it with `error` set. Until then rows go to `OUTPUT.partial`, kept when the run
        stops; with `config.resume` its rows are taken over (see the module docstring).

        Args:
            client: A connected prediction client (e.g. `serving.Client`).
            progress: Called with the number of rows after each batch is written.

        Raises:
            ScoringError: The model's label names cannot be fetched (server down, unknown
                model): nothing is written. Or the server became unavailable during the run:
                the rows written so far are kept in `OUTPUT.partial` for `resume`.
            ConfigError: Input columns clash with the score columns.
            DataError: The input has a bad row or the output cannot be written, or (resume)
                the partial output does not match the input or the model's columns.
        """
        config = self.config
        started = time.monotonic()
        problem_type = self._problem_type(client)
        self._choose_text_columns(problem_type)
        labels = self._label_names(client) if problem_type in (SINGLE_LABEL, MULTI_LABEL) else []
        columns = self._output_columns(problem_type, labels)
        counts = _Counts(config.label_column, labels, problem_type, config.label_delimiter)
        logger.info(
            "Scoring %s with model %r on %s (batch size %d, %d requests in flight)",
            config.input, config.model_name, config.server, config.batch_size,
            config.concurrency,
        )
        writer = TableWriter(config.output, columns.all, keep_partial=True,
                             resume=config.resume)
        if (config.resume and config.output.exists()
                and not os.path.lexists(self.partial_path)):
            return self._check_complete_output(writer, columns, counts, labels, started,
                                               progress)
        try:
            with writer, ThreadPoolExecutor(
                max_workers=config.concurrency, thread_name_prefix="tfinetune-score"
            ) as pool:
                rows = iter(self.reader)
                if writer.resumed_rows:
                    self._take_over(writer.stored_rows(), rows, writer, columns, counts,
                                    self.partial_path)
                    logger.info("Resuming %s: the %d rows already in %s are kept and not sent "
                                "again; scoring from input row %d", config.output, counts.rows,
                                self.partial_path, counts.rows + 1)
                    if progress is not None:
                        progress(counts.rows)
                score_rows = (self._score_length_sorted if config.sort_by_length
                              else self._score_in_order)
                score_rows(pool, rows, client, labels, problem_type, writer, columns, counts,
                           progress)
        except _ServerUnavailable as error:
            raise ScoringError(
                f"The {config.server_description} became unavailable during the run: {error}. "
                f"Expected a running model server serving model {config.model_name!r}. The "
                f"{counts.rows} rows written so far are kept in {self.partial_path}: run the "
                f"same command with --resume once the server is back to score the rest."
            ) from None
        seconds = time.monotonic() - started
        result = counts.result(config.output, labels, seconds, resumed=writer.resumed_rows)
        logger.info(
            "Scored %d rows (%d failed, %d resumed) in %.1f s into %s",
            result.rows, result.failed, result.resumed, seconds, config.output,
        )
        return result

    # ---------------------------------------------------------------------------- resuming

    def _check_existing_output(self) -> None:
        config = self.config
        if config.resume or config.overwrite:
            return
        if os.path.lexists(self.partial_path):
            raise ConfigError(
                f"An interrupted run left {self.partial_path}. Expected --resume to continue "
                "it (its rows are kept and not sent again) or --overwrite to start afresh. "
                f"Received: neither, for output {config.output}")
        if os.path.lexists(config.output):
            raise ConfigError(
                f"The output {config.output} already exists. Expected --overwrite to replace "
                "it, --resume to check and keep it, or another --output path. Received: "
                "neither")

    def _take_over(self, stored_rows: Iterable[dict], rows: Iterator[TableRow],
                   writer: TableWriter, columns: "_Columns", counts: "_Counts",
                   source: os.PathLike) -> None:
        """Counts the rows of an earlier run, checking each against the next input row."""
        form = writer.stored_form
        for number, stored in enumerate(stored_rows, start=1):
            row = next(rows, None)
            if row is None:
                raise DataError(
                    f"Cannot resume from {source}: it has more rows than the input "
                    f"{self.config.input} ({number - 1}). Expected the output of this input; "
                    "use --overwrite to start afresh.")
            for name in columns.inputs:
                if form(stored.get(name)) != form(row.values.get(name)):
                    raise DataError(
                        f"Cannot resume from {source}: its row {number} does not match "
                        f"{row.location} of the input: column {name!r} is "
                        f"{_short(stored.get(name))} there and {_short(row.values.get(name))} "
                        "in the input. Expected the output of this input; use --overwrite to "
                        "start afresh.")
            try:
                outcome = columns.stored_outcome(stored, writer.format)
            except (KeyError, TypeError, ValueError) as error:
                raise DataError(
                    f"Cannot resume from {source}: its row {number} has no valid prediction "
                    f"({type(error).__name__}: {error}). Expected a scored row or an error.") \
                    from None
            counts.add(row, outcome)

    def _check_complete_output(self, writer: TableWriter, columns: "_Columns",
                               counts: "_Counts", labels: list[str], started: float,
                               progress: Callable[[int], None] | None) -> ScoreResult:
        """`resume` with a finished output: checks it against the input, sends nothing."""
        config = self.config
        rows = iter(self.reader)
        self._take_over(writer.output_rows(), rows, writer, columns, counts, config.output)
        if next(rows, None) is not None:
            raise DataError(
                f"Cannot resume from {config.output}: it is complete with {counts.rows} rows "
                f"but the input {config.input} has more. Expected the output of this input; "
                "use --overwrite to start afresh.")
        if progress is not None:
            progress(counts.rows)
        logger.info("%s is already complete (%d rows): nothing to send", config.output,
                    counts.rows)
        return counts.result(config.output, labels, time.monotonic() - started,
                             resumed=counts.rows)

    # -------------------------------------------------------------------------- before rows

    def _problem_type(self, client: _Client) -> str:
        method = getattr(client, "problem_type", None)
        if method is None:
            return SINGLE_LABEL
        try:
            problem_type = method()
        except Exception as error:  # noqa: BLE001  (any failure means we cannot start)
            # Same message as for the label names: both are how the scorer learns the model's
            # outputs before anything is written.
            raise self._cannot_start("label names", error) from error
        if problem_type not in PROBLEM_TYPES:
            raise ScoringError(
                f"Model {self.config.model_name!r} on {self.config.server} reported an unknown "
                f"problem type. Expected one of {list(PROBLEM_TYPES)}. Received: "
                f"{problem_type!r}")
        return problem_type

    def _choose_text_columns(self, problem_type: str) -> None:
        """The input columns for the model's task (defaults: `text`; QA: `question` and
        `context`), checked before anything is sent or written."""
        config = self.config
        defaults = DEFAULT_TEXT_COLUMNS.get(problem_type, ("text", None))
        self.text_column = config.text_column or defaults[0]
        self.text_pair_column = config.text_pair_column or defaults[1]
        if problem_type == QUESTION_ANSWERING and self.text_pair_column is None:
            raise ConfigError("A question-answering model needs a context column. Expected "
                              "--text-pair-column (default: context).")
        if problem_type == TOKEN_CLASSIFICATION and config.label_column is not None:
            raise ConfigError(
                "--label-column is not supported for token classification: entity-level "
                "metrics need word-level tags. Expected `tfinetune evaluate RUN_DIR --data "
                f"FILE.conll|.jsonl` for NER metrics. Received: --label-column "
                f"{config.label_column}")
        self.reader.require_columns([self.text_column, self.text_pair_column])

    def _label_names(self, client: _Client) -> list[str]:
        config = self.config
        try:
            labels = [str(label) for label in client.label_names()]
        except Exception as error:  # noqa: BLE001  (any failure means we cannot start)
            raise self._cannot_start("label names", error) from error
        if not labels or len(set(labels)) != len(labels):
            raise ScoringError(
                f"Model {config.model_name!r} on {config.server} reported invalid label names. "
                f"Expected unique names. Received: {labels}"
            )
        return labels

    def _cannot_start(self, what: str, error: BaseException) -> ScoringError:
        config = self.config
        return ScoringError(
                f"Cannot get the {what} of model {config.model_name!r} from the "
                f"{config.server_description}: {_describe(error)}. Expected a running model "
                f"server (tfinetune serve) that serves model {config.model_name!r}"
                + (f" version {config.model_version}" if config.model_version else "")
                + f" with signature {config.signature_name!r}. Nothing was written."
            )

    def _output_columns(self, problem_type: str, labels: list[str]) -> "_Columns":
        inputs = self.reader.columns
        if problem_type in TASK_COLUMNS:
            names = {name: name if name not in inputs else f"predicted_{name}"
                     for name in TASK_COLUMNS[problem_type]}
            added = [*names.values(), ERROR_COLUMN]
            clashes = [name for name in added if name in inputs]
            if clashes:
                raise ConfigError(
                    f"The input {self.config.input} already has column(s) {clashes} that "
                    f"scoring adds. Expected input columns other than {added} (rename them, "
                    "e.g. when re-scoring an output file).")
            return _TaskColumns(inputs, names, problem_type)
        name, taken_name, prefix = {
            SINGLE_LABEL: (LABEL_COLUMN, LABEL_COLUMN_IF_TAKEN, PROBABILITY_PREFIX),
            MULTI_LABEL: (LABELS_COLUMN, LABELS_COLUMN_IF_TAKEN, SCORE_PREFIX),
            REGRESSION: (VALUE_COLUMN, VALUE_COLUMN_IF_TAKEN, None),
        }[problem_type]
        label = name if name not in inputs else taken_name
        probabilities = {} if prefix is None else {name: prefix + name for name in labels}
        added = [label, *probabilities.values(), ERROR_COLUMN]
        clashes = [name for name in added if name in inputs]
        if clashes or len(set(added)) != len(added):
            raise ConfigError(
                f"The input {self.config.input} already has column(s) {clashes or added} that "
                f"scoring adds. Expected input columns other than {added} (rename them, e.g. "
                "when re-scoring an output file)."
            )
        return _Columns(inputs, label, probabilities, problem_type,
                        self.config.label_delimiter)

    # ------------------------------------------------------------------ worker thread

    def _score_batch(
        self, client: _Client, rows: list[TableRow], labels: list[str], problem_type: str
    ) -> list[_Outcome]:
        """Predicts one batch; returns a prediction or an error message per row."""
        outcomes: list[_Outcome] = [None] * len(rows)
        text_column, pair_column = self.text_column, self.text_pair_column
        texts, pairs, positions = [], [] if pair_column else None, []
        for position, row in enumerate(rows):
            text = row.values.get(text_column)
            pair = row.values.get(pair_column) if pair_column else ""
            problem = _text_problem(text_column, text) or (
                _text_problem(pair_column, pair) if pairs is not None else None)
            if problem:
                outcomes[position] = f"{problem} at {row.location}"
                continue
            texts.append(text)
            if pairs is not None:
                pairs.append(pair)
            positions.append(position)
        if texts:
            outcomes_of_texts = _predict(client, texts, pairs, labels, problem_type)
            for position, outcome in zip(positions, outcomes_of_texts):
                outcomes[position] = outcome
        return outcomes

    # ------------------------------------------------------------------- main thread

    def _score_in_order(self, pool, input_rows, client, labels, problem_type, writer, columns,
                        counts, progress) -> None:
        """Requests of consecutive rows, a sliding window of `concurrency` in flight."""
        config = self.config
        window: deque[tuple[list[TableRow], Future]] = deque()
        try:
            for rows in _batches(input_rows, config.batch_size):
                window.append((rows, pool.submit(self._score_batch, client, rows, labels,
                                                 problem_type)))
                if len(window) >= config.concurrency:
                    rows, future = window.popleft()
                    self._write(writer, columns, counts, rows,
                                [(list(range(len(rows))), future)], progress)
            while window:
                rows, future = window.popleft()
                self._write(writer, columns, counts, rows, [(list(range(len(rows))), future)],
                            progress)
        except BaseException:
            for _, future in window:
                future.cancel()
            raise

    def _score_length_sorted(self, pool, input_rows, client, labels, problem_type, writer,
                             columns, counts, progress) -> None:
        """Chunks of `concurrency` requests' worth of rows, each sent as requests of rows of
        similar text length (less padding in the model's batch), written in input order."""
        config = self.config
        pending: list[tuple[list[int], Future]] = []
        try:
            for chunk in _batches(input_rows, config.batch_size * config.concurrency):
                pending = [
                    (positions, pool.submit(self._score_batch, client,
                                            [chunk[i] for i in positions], labels,
                                            problem_type))
                    for positions in self._length_sorted_batches(chunk)]
                self._write(writer, columns, counts, chunk, pending, progress)
                pending = []
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise

    def _length_sorted_batches(self, chunk: list[TableRow]) -> list[list[int]]:
        """Positions in `chunk` grouped into requests of at most `batch_size` rows, by text
        length (a model pads its batch to the longest row: similar lengths waste less)."""
        size = self.config.batch_size
        count = -(-len(chunk) // size)
        text_column, pair_column = self.text_column, self.text_pair_column

        def length(position: int) -> int:
            values = chunk[position].values
            return sum(len(value) for value in (values.get(text_column),
                                                values.get(pair_column) if pair_column else "")
                       if isinstance(value, str))

        order = sorted(range(len(chunk)), key=length)
        # `count` requests of near-equal size (never more than batch_size rows).
        bounds = [len(chunk) * i // count for i in range(count + 1)]
        return [order[bounds[i]:bounds[i + 1]] for i in range(count)]

    def _write(
        self,
        writer: TableWriter,
        columns: "_Columns",
        counts: "_Counts",
        rows: list[TableRow],
        pending: list[tuple[list[int], Future]],
        progress: Callable[[int], None] | None,
    ) -> None:
        """Waits for the requests of a chunk and writes its rows in input order."""
        outcomes: list[_Outcome] = [None] * len(rows)
        for positions, future in pending:
            try:
                results = future.result()
            except _ServerUnavailable:
                raise
            except Exception as error:  # noqa: BLE001  (a bug in a worker must not drop rows)
                logger.exception("Scoring a batch failed unexpectedly")
                results = [_describe(error)] * len(positions)
            for position, outcome in zip(positions, results):
                outcomes[position] = outcome
        size = self.config.batch_size
        for start in range(0, len(rows), size):
            for row, outcome in zip(rows[start:start + size], outcomes[start:start + size]):
                values = {name: row.values.get(name) for name in columns.inputs}
                if isinstance(outcome, str):
                    values[ERROR_COLUMN] = outcome
                else:
                    values.update(columns.predicted_values(outcome, writer.format))
                writer.write(values)
                counts.add(row, outcome)
            if progress is not None:
                progress(len(rows[start:start + size]))


class _Columns:
    """The output columns: the input's, then label, prob_<label>... (multi-label: labels,
    score_<label>...; regression: value), error."""

    def __init__(self, inputs: list[str], label: str, probabilities: dict[str, str],
                 problem_type: str = SINGLE_LABEL, label_delimiter: str = ",") -> None:
        self.inputs = inputs
        self.label = label
        self.probabilities = probabilities
        self.problem_type = problem_type
        self.label_delimiter = label_delimiter
        self.all = [*inputs, label, *probabilities.values(), ERROR_COLUMN]

    def predicted_values(self, prediction: Any, table_format: str) -> dict[str, Any]:
        """The predicted columns of one row."""
        if self.problem_type == REGRESSION:
            return {self.label: prediction.value}
        if self.problem_type == MULTI_LABEL:
            labels = list(prediction.labels)
            values = {self.label: labels if table_format == "jsonl"
                      else self.label_delimiter.join(labels)}
            scores = prediction.scores
        else:
            values = {self.label: prediction.label}
            scores = prediction.probabilities
        for name, column in self.probabilities.items():
            values[column] = scores[name]
        return values

    def stored_outcome(self, stored: dict[str, Any], table_format: str) -> _Outcome:
        """The error or prediction of a row read back from an earlier run's output (the
        inverse of `predicted_values`, as far as the metrics need it)."""
        error = _stored_error(stored)
        if error is not None:
            return error
        if self.problem_type == REGRESSION:
            return _StoredPrediction(value=float(stored[self.label]))
        scores = {name: float(stored[column]) for name, column in self.probabilities.items()}
        if self.problem_type == MULTI_LABEL:
            labels = stored[self.label]
            if isinstance(labels, str):
                labels = labels.split(self.label_delimiter) if labels else []
            return _StoredPrediction(labels=list(labels), scores=scores)
        if not isinstance(stored[self.label], str) or not stored[self.label]:
            raise ValueError(f"no label in column {self.label!r}")
        return _StoredPrediction(label=stored[self.label], probabilities=scores)


class _TaskColumns:
    """The output columns of the other tasks: the input's, then (NER) `entities`; (QA)
    `answer`, `answer_start`, `answer_end`, `answer_score`; (seq2seq) `generated_text`; then
    `error`. Entities are a list in JSON Lines and a JSON string in CSV/TSV/Parquet."""

    def __init__(self, inputs: list[str], names: dict[str, str], problem_type: str) -> None:
        self.inputs = inputs
        self.names = names
        self.problem_type = problem_type
        self.all = [*inputs, *names.values(), ERROR_COLUMN]

    def predicted_values(self, prediction: Any, table_format: str) -> dict[str, Any]:
        if self.problem_type == TOKEN_CLASSIFICATION:
            entities = list(prediction.entities)
            return {self.names["entities"]: entities if table_format == "jsonl"
                    else json.dumps(entities, ensure_ascii=False)}
        if self.problem_type == QUESTION_ANSWERING:
            return {self.names["answer"]: prediction.answer,
                    self.names["answer_start"]: prediction.start,
                    self.names["answer_end"]: prediction.end,
                    self.names["answer_score"]: prediction.score}
        return {self.names["generated_text"]: prediction.generated_text}

    def stored_outcome(self, stored: dict[str, Any], table_format: str) -> _Outcome:
        """The error or prediction of a row read back from an earlier run's output."""
        error = _stored_error(stored)
        if error is not None:
            return error
        if self.problem_type == TOKEN_CLASSIFICATION:
            entities = stored[self.names["entities"]]
            return _StoredPrediction(entities=json.loads(entities) if isinstance(entities, str)
                                     else entities)
        if self.problem_type == QUESTION_ANSWERING:
            answer = stored[self.names["answer"]]
            return _StoredPrediction(answer="" if answer is None else str(answer))
        text = stored[self.names["generated_text"]]
        return _StoredPrediction(generated_text="" if text is None else str(text))


class _StoredPrediction:
    """A prediction read back from an earlier run's output (the fields the metrics read)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _stored_error(stored: dict[str, Any]) -> str | None:
    error = stored.get(ERROR_COLUMN)
    return None if error is None or error == "" else str(error)


class _Counts:
    """Row and failure counts, and what the metrics need (see the accumulators below)."""

    def __init__(self, label_column: str | None, labels: list[str],
                 problem_type: str = SINGLE_LABEL, label_delimiter: str = ",") -> None:
        self.label_column = label_column
        self.labels = labels
        self.problem_type = problem_type
        if problem_type in (QUESTION_ANSWERING, SEQ2SEQ):
            from tfinetune.task_score_metrics import TaskScoreAccumulator

            self.accumulator = TaskScoreAccumulator(problem_type)
        elif problem_type == TOKEN_CLASSIFICATION:
            self.accumulator = _NoMetrics()
        else:
            accumulator = {SINGLE_LABEL: _ConfusionMatrix, MULTI_LABEL: _MultiLabelCounts,
                           REGRESSION: _RegressionValues}[problem_type]
            self.accumulator = accumulator(labels, label_delimiter)
        self.rows = self.failed = self.excluded_failed = self.excluded_unknown_label = 0
        self.unknown_label_examples: list[str] = []
        self.first_error: str | None = None

    def add(self, row: TableRow, outcome: _Outcome) -> None:
        self.rows += 1
        failed = isinstance(outcome, str)
        if failed:
            self.failed += 1
            if self.first_error is None:
                self.first_error = outcome
        if self.label_column is None:
            return
        if failed:
            self.excluded_failed += 1
            return
        if not self.accumulator.add(row.values.get(self.label_column), outcome):
            self.excluded_unknown_label += 1
            example = repr(row.values.get(self.label_column))
            if (len(self.unknown_label_examples) < _UNKNOWN_LABEL_EXAMPLES
                    and example not in self.unknown_label_examples):
                self.unknown_label_examples.append(example)

    def result(self, output, labels: list[str], seconds: float,
               resumed: int = 0) -> ScoreResult:
        metrics = self.accumulator.metrics() if self.label_column is not None else None
        return ScoreResult(
            output=output, labels=labels, rows=self.rows, failed=self.failed, seconds=seconds,
            problem_type=self.problem_type,
            label_column=self.label_column, metrics=metrics,
            excluded_failed=self.excluded_failed,
            excluded_unknown_label=self.excluded_unknown_label,
            unknown_label_examples=self.unknown_label_examples, first_error=self.first_error,
            resumed=resumed,
        )


class _ConfusionMatrix:
    """Single-label metrics: the confusion matrix, in constant memory."""

    def __init__(self, labels: list[str], label_delimiter: str) -> None:
        self.labels = labels
        self.ids = {name: i for i, name in enumerate(labels)}
        self.matrix = [[0] * len(labels) for _ in labels]

    def add(self, true_value: Any, prediction: Any) -> bool:
        """Counts one row; False when its true label is empty or unknown to the model."""
        true_label = label_name(true_value)
        if true_label not in self.ids:
            return False
        self.matrix[self.ids[true_label]][self.ids[prediction.label]] += 1
        return True

    def metrics(self) -> ClassificationMetrics | None:
        if not any(map(any, self.matrix)):
            return None
        return ClassificationMetrics.from_confusion_matrix(self.matrix, self.labels)


class _MultiLabelCounts:
    """Multi-label metrics: per-label true/false positives and false negatives and the exact
    matches, in constant memory. True labels are parsed as `fit` parses them (a list, or a
    `label_delimiter`-separated string, empty for none)."""

    def __init__(self, labels: list[str], label_delimiter: str) -> None:
        self.labels = labels
        self.label_delimiter = label_delimiter
        self.true_positives = [0] * len(labels)
        self.false_positives = [0] * len(labels)
        self.false_negatives = [0] * len(labels)
        self.exact_matches = self.examples = 0

    def add(self, true_value: Any, prediction: Any) -> bool:
        """Counts one row; False when its label cell is missing or names an unknown label."""
        if true_value is None:
            return False
        truth = set(parse_label_list(true_value, self.label_delimiter))
        if not truth <= set(self.labels):
            return False
        predicted = set(prediction.labels)
        for i, name in enumerate(self.labels):
            if name in predicted and name in truth:
                self.true_positives[i] += 1
            elif name in predicted:
                self.false_positives[i] += 1
            elif name in truth:
                self.false_negatives[i] += 1
        self.exact_matches += truth == predicted
        self.examples += 1
        return True

    def metrics(self) -> MultiLabelMetrics | None:
        if not self.examples:
            return None
        return MultiLabelMetrics.from_counts(self.true_positives, self.false_positives,
                                             self.false_negatives, self.exact_matches,
                                             self.examples, self.labels)


class _RegressionValues:
    """Regression metrics. MSE and MAE could be running sums, but Pearson and Spearman need
    every value: the true and predicted values are kept in two float64 arrays (16 bytes per
    scored row, the only per-row memory of a scoring run)."""

    def __init__(self, labels: list[str], label_delimiter: str) -> None:
        self.truth = array("d")
        self.predicted = array("d")

    def add(self, true_value: Any, prediction: Any) -> bool:
        """Keeps one row's values; False when its target is missing or not a finite number."""
        number = parse_number(true_value)
        if number is None:
            return False
        self.truth.append(number)
        self.predicted.append(float(prediction.value))
        return True

    def metrics(self) -> RegressionMetrics | None:
        if not self.truth:
            return None
        return RegressionMetrics.compute(self.truth, self.predicted)


class _NoMetrics:
    """For tasks whose scoring run computes no metrics (NER: see `tfinetune evaluate`)."""

    def add(self, true_value: Any, prediction: Any) -> bool:
        return False

    def metrics(self) -> None:
        return None


def _batches(rows: Iterable[TableRow], size: int) -> Iterator[list[TableRow]]:
    batch: list[TableRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict(
    client: _Client, texts: list[str], pairs: list[str] | None, labels: list[str],
    problem_type: str = SINGLE_LABEL,
) -> list[_Outcome]:
    """Predictions for `texts`, splitting a failed batch to isolate rows that fail alone."""
    try:
        predictions = client.predict(texts, pairs)
        return [_checked(prediction, labels, problem_type)
                for prediction in _same_length(predictions, texts)]
    except Exception as error:  # noqa: BLE001  (every failure becomes a row error)
        if _code_name(error) in STOP_ON_CODES:
            raise _ServerUnavailable(_describe(error)) from None
        if len(texts) > 1 and _code_name(error) in SPLIT_ON_CODES:
            middle = len(texts) // 2
            logger.debug("Batch of %d failed (%s); retrying in halves", len(texts), error)
            return (
                _predict(client, texts[:middle], pairs and pairs[:middle], labels, problem_type)
                + _predict(client, texts[middle:], pairs and pairs[middle:], labels,
                           problem_type)
            )
        message = _describe(error)
        logger.warning("%d row(s) failed: %s", len(texts), message)
        return [message] * len(texts)


def _same_length(predictions: Sequence, texts: Sequence[str]) -> Sequence:
    if len(predictions) != len(texts):
        raise ScoringError(
            f"The server returned {len(predictions)} predictions for {len(texts)} texts. "
            "Expected one per text."
        )
    return predictions


def _checked(prediction: Any, labels: list[str], problem_type: str = SINGLE_LABEL) -> Any:
    """The prediction if it has its problem type's fields and they match the model's labels,
    else an error."""
    changed = "(did the model on the server change during the run?)"
    if problem_type in TASK_COLUMNS:
        field = {TOKEN_CLASSIFICATION: "entities", QUESTION_ANSWERING: "answer",
                 SEQ2SEQ: "generated_text"}[problem_type]
        if getattr(prediction, field, None) is None:
            return f"Prediction has no {field}: {prediction!r} {changed}"
        return prediction
    if problem_type == REGRESSION:
        value = getattr(prediction, "value", None)
        if not isinstance(value, (int, float)):
            return f"Prediction has no regression value: {prediction!r} {changed}"
        return prediction
    if problem_type == MULTI_LABEL:
        scores = getattr(prediction, "scores", None)
        predicted = getattr(prediction, "labels", None)
        if scores is None or predicted is None or set(scores) != set(labels) or not set(
                predicted) <= set(labels):
            return (f"Prediction does not match the model's labels {labels}: labels="
                    f"{predicted!r}, scores for {sorted(scores or [])} {changed}")
        return prediction
    if getattr(prediction, "probabilities", None) is None:
        return f"Prediction has no label probabilities: {prediction!r} {changed}"
    if prediction.label not in labels or set(prediction.probabilities) != set(labels):
        return (
            f"Prediction does not match the model's labels {labels}: "
            f"label={prediction.label!r}, probabilities for {sorted(prediction.probabilities)} "
            "(did the model on the server change during the run?)"
        )
    return prediction


def _text_problem(column: str, value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if value is None:
        return f"Missing text in column {column!r}. Expected a string. Received: None"
    return (
        f"Text in column {column!r} must be a string. "
        f"Received: {value!r} ({type(value).__name__})"
    )


def _code_name(error: BaseException) -> str | None:
    return getattr(getattr(error, "code", None), "name", None)


class _ServerUnavailable(Exception):
    """The server stayed unavailable through the client's retries: the run stops."""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: BaseException) -> str:
    code = _code_name(error)
    return f"{code}: {error}" if code else f"{type(error).__name__}: {error}"
