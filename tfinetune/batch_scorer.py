"""`BatchScorer`: score a data file through a model server, in bounded memory, in input order.

    scorer = BatchScorer(ScoreConfig(input="reviews.csv", output="scored.csv", model_name="clf"))
    with serving.Client("localhost:8500", "clf") as client:
        result = scorer.score(client)

The input is streamed in batches of `batch_size` rows; up to `concurrency` Predict requests
are in flight at once (a thread pool and a window of futures), so memory is bounded by
`concurrency x batch_size` rows whatever the file size. Rows are written strictly in input
order with every input column, then the predicted label, one `prob_<label>` column per label
and `error`.

A request that fails is retried by the client (UNAVAILABLE); if it still fails the rows are
written with `error` set ("CODE: message"), never dropped. When a batch fails with a code
that one bad row can cause (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, INTERNAL) it is split in
halves and re-sent, so only the rows that fail on their own get an error.

This module does not import `serving`: any client with `label_names()` and
`predict(texts, text_pairs)` works (see `serving.Client`); errors carrying a `code` attribute
with a `.name` (like `serving.ServingError`) are reported as `CODE: message`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from tfinetune.classification_metrics import ClassificationMetrics
from tfinetune.errors import ConfigError
from tfinetune.errors import ScoringError
from tfinetune.label_set import label_name
from tfinetune.score_config import ScoreConfig
from tfinetune.score_result import ScoreResult
from tfinetune.table_reader import TableReader
from tfinetune.table_row import TableRow
from tfinetune.table_writer import TableWriter

logger = logging.getLogger(__name__)

LABEL_COLUMN = "label"
LABEL_COLUMN_IF_TAKEN = "predicted_label"
PROBABILITY_PREFIX = "prob_"
ERROR_COLUMN = "error"
# Status codes a single bad row can cause: the batch is split to isolate it.
SPLIT_ON_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL"})
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
    """

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        self.reader = TableReader(config.input)
        self.reader.require_columns(
            [config.text_column, config.text_pair_column, config.label_column])

    @property
    def total_rows(self) -> int | None:
        """Number of input rows when known up front (Parquet), else None."""
        return self.reader.num_rows

    def score(
        self, client: _Client, progress: Callable[[int], None] | None = None
    ) -> ScoreResult:
        """Scores the input through `client` and writes the output file.

        The output appears only when every row is written (see `TableWriter`); failed rows
        are in it with `error` set.

        Args:
            client: A connected prediction client (e.g. `serving.Client`).
            progress: Called with the number of rows after each batch is written.

        Raises:
            ScoringError: The model's label names cannot be fetched (server down, unknown
                model): nothing is written.
            ConfigError: Input columns clash with the score columns.
            DataError: The input has a bad row or the output cannot be written.
        """
        config = self.config
        started = time.monotonic()
        labels = self._label_names(client)
        columns = self._output_columns(labels)
        counts = _Counts(config.label_column, labels)
        logger.info(
            "Scoring %s with model %r on %s (batch size %d, %d requests in flight)",
            config.input, config.model_name, config.server, config.batch_size,
            config.concurrency,
        )
        with TableWriter(config.output, columns.all) as writer, ThreadPoolExecutor(
            max_workers=config.concurrency, thread_name_prefix="tfinetune-score"
        ) as pool:
            window: deque[tuple[list[TableRow], Future]] = deque()
            try:
                for rows in _batches(self.reader, config.batch_size):
                    window.append((rows, pool.submit(self._score_batch, client, rows, labels)))
                    if len(window) >= config.concurrency:
                        self._write(writer, columns, counts, *window.popleft(), progress)
                while window:
                    self._write(writer, columns, counts, *window.popleft(), progress)
            except BaseException:
                for _, future in window:
                    future.cancel()
                raise
        seconds = time.monotonic() - started
        result = counts.result(config.output, labels, seconds)
        logger.info(
            "Scored %d rows (%d failed) in %.1f s into %s",
            result.rows, result.failed, seconds, config.output,
        )
        return result

    # -------------------------------------------------------------------------- before rows

    def _label_names(self, client: _Client) -> list[str]:
        config = self.config
        try:
            labels = [str(label) for label in client.label_names()]
        except Exception as error:  # noqa: BLE001  (any failure means we cannot start)
            raise ScoringError(
                f"Cannot get the label names of model {config.model_name!r} from the server "
                f"at {config.server}: {_describe(error)}. Expected a running model server "
                f"(tfinetune serve) that serves model {config.model_name!r}"
                + (f" version {config.model_version}" if config.model_version else "")
                + f" with signature {config.signature_name!r}. Nothing was written."
            ) from error
        if not labels or len(set(labels)) != len(labels):
            raise ScoringError(
                f"Model {config.model_name!r} on {config.server} reported invalid label names. "
                f"Expected unique names. Received: {labels}"
            )
        return labels

    def _output_columns(self, labels: list[str]) -> "_Columns":
        inputs = self.reader.columns
        label = LABEL_COLUMN if LABEL_COLUMN not in inputs else LABEL_COLUMN_IF_TAKEN
        probabilities = {name: PROBABILITY_PREFIX + name for name in labels}
        added = [label, *probabilities.values(), ERROR_COLUMN]
        clashes = [name for name in added if name in inputs]
        if clashes or len(set(added)) != len(added):
            raise ConfigError(
                f"The input {self.config.input} already has column(s) {clashes or added} that "
                f"scoring adds. Expected input columns other than {added} (rename them, e.g. "
                "when re-scoring an output file)."
            )
        return _Columns(inputs, label, probabilities)

    # ------------------------------------------------------------------ worker thread

    def _score_batch(
        self, client: _Client, rows: list[TableRow], labels: list[str]
    ) -> list[_Outcome]:
        """Predicts one batch; returns a prediction or an error message per row."""
        config = self.config
        outcomes: list[_Outcome] = [None] * len(rows)
        texts, pairs, positions = [], [] if config.text_pair_column else None, []
        for position, row in enumerate(rows):
            text = row.values.get(config.text_column)
            pair = row.values.get(config.text_pair_column) if config.text_pair_column else ""
            problem = _text_problem(config.text_column, text) or (
                _text_problem(config.text_pair_column, pair) if pairs is not None else None)
            if problem:
                outcomes[position] = f"{problem} at {row.location}"
                continue
            texts.append(text)
            if pairs is not None:
                pairs.append(pair)
            positions.append(position)
        if texts:
            for position, outcome in zip(positions, _predict(client, texts, pairs, labels)):
                outcomes[position] = outcome
        return outcomes

    # ------------------------------------------------------------------- main thread

    def _write(
        self,
        writer: TableWriter,
        columns: "_Columns",
        counts: "_Counts",
        rows: list[TableRow],
        future: Future,
        progress: Callable[[int], None] | None,
    ) -> None:
        try:
            outcomes = future.result()
        except Exception as error:  # noqa: BLE001  (a bug in a worker must not drop rows)
            logger.exception("Scoring a batch failed unexpectedly")
            outcomes = [_describe(error)] * len(rows)
        for row, outcome in zip(rows, outcomes):
            values = {name: row.values.get(name) for name in columns.inputs}
            if isinstance(outcome, str):
                values[ERROR_COLUMN] = outcome
            else:
                values[columns.label] = outcome.label
                for name, column in columns.probabilities.items():
                    values[column] = outcome.probabilities[name]
            writer.write(values)
            counts.add(row, outcome)
        if progress is not None:
            progress(len(rows))


class _Columns:
    """The output columns: the input's, then label, prob_<label>..., error."""

    def __init__(self, inputs: list[str], label: str, probabilities: dict[str, str]) -> None:
        self.inputs = inputs
        self.label = label
        self.probabilities = probabilities
        self.all = [*inputs, label, *probabilities.values(), ERROR_COLUMN]


class _Counts:
    """Row and failure counts, and the confusion matrix, in constant memory."""

    def __init__(self, label_column: str | None, labels: list[str]) -> None:
        self.label_column = label_column
        self.labels = labels
        self.ids = {name: i for i, name in enumerate(labels)}
        self.matrix = [[0] * len(labels) for _ in labels]
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
        true_label = label_name(row.values.get(self.label_column))
        if true_label not in self.ids:
            self.excluded_unknown_label += 1
            example = repr(row.values.get(self.label_column))
            if (len(self.unknown_label_examples) < _UNKNOWN_LABEL_EXAMPLES
                    and example not in self.unknown_label_examples):
                self.unknown_label_examples.append(example)
            return
        self.matrix[self.ids[true_label]][self.ids[outcome.label]] += 1

    def result(self, output, labels: list[str], seconds: float) -> ScoreResult:
        metrics = None
        if self.label_column is not None and any(map(any, self.matrix)):
            metrics = ClassificationMetrics.from_confusion_matrix(self.matrix, labels)
        return ScoreResult(
            output=output, labels=labels, rows=self.rows, failed=self.failed, seconds=seconds,
            label_column=self.label_column, metrics=metrics,
            excluded_failed=self.excluded_failed,
            excluded_unknown_label=self.excluded_unknown_label,
            unknown_label_examples=self.unknown_label_examples, first_error=self.first_error,
        )


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
    client: _Client, texts: list[str], pairs: list[str] | None, labels: list[str]
) -> list[_Outcome]:
    """Predictions for `texts`, splitting a failed batch to isolate rows that fail alone."""
    try:
        predictions = client.predict(texts, pairs)
        return [_checked(prediction, labels) for prediction in _same_length(predictions, texts)]
    except Exception as error:  # noqa: BLE001  (every failure becomes a row error)
        if len(texts) > 1 and _code_name(error) in SPLIT_ON_CODES:
            middle = len(texts) // 2
            logger.debug("Batch of %d failed (%s); retrying in halves", len(texts), error)
            return (
                _predict(client, texts[:middle], pairs and pairs[:middle], labels)
                + _predict(client, texts[middle:], pairs and pairs[middle:], labels)
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


def _checked(prediction: Any, labels: list[str]) -> Any:
    """The prediction if its label and probabilities match the model's labels, else an error."""
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


def _describe(error: BaseException) -> str:
    code = _code_name(error)
    return f"{code}: {error}" if code else f"{type(error).__name__}: {error}"
