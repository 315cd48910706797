"""`PortableQuestionAnsweringCodec`: the client side of a `--portable` extractive
question-answering export, whose `serving_default` takes token id windows and returns their
`start_logits` and `end_logits`.

It does on the client what the text export's graph does (see
`export.question_answering_serving_module`), so that both exports give the same answers:

1. Windows: `QuestionAnsweringTokenizer` cuts each (question, context) pair into windows of
   `max_length` tokens sharing `doc_stride` tokens, with the export's `tokenizer.json` (the
   `tokenizers` library), as training did. One request holds every window of every pair.
2. Answers: `AnswerSpanChooser` picks each pair's span from its windows' logits
   (`max_answer_length`, SQuAD v2 "no answer" with `version_2_with_negative`) and cuts it out
   of the context by character offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.portable_codec_files import read_client_tokenizer
from serving.portable_question_answering_spans import AnswerSpanChooser
from serving.portable_question_answering_tokenizer import QuestionAnsweringTokenizer
from serving.portable_question_answering_windows import QuestionAnsweringWindows
from serving.prediction import Prediction

#: The outputs of the portable signature (also the text export's `tokens` signature).
OUTPUTS = ("start_logits", "end_logits")
EXPORT_CONFIG_FILE = "export_config.json"
DEFAULT_CLIENT_TOKENIZER = "tokenizer/tokenizer.json"


class PortableQuestionAnsweringCodec:
    """Token id windows for, and answers from, a portable question-answering export.

    Example:
        tokenizer = ClientTokenizer.from_path("models/qa")  # this codec for a QA export
        with Client("localhost:8500", "qa", tokenizer=tokenizer) as client:
            client.predict(["where is paris ?"], ["the city of paris is in france ."])

    Args:
        windows: Builds the windows (the export's tokenizer, `max_length`, `doc_stride`).
        spans: Chooses the answers (`max_answer_length`, `version_2_with_negative`).
        source: Where the export was read from (for messages).
    """

    task = "question-answering"
    #: Takes (question, context) pairs: `predict(questions, contexts)`.
    text_pair = True

    def __init__(self, windows: QuestionAnsweringTokenizer, spans: AnswerSpanChooser, *,
                 source: str = "") -> None:
        self.windows = windows
        self.spans = spans
        self.source = source
        self.max_length = windows.max_length
        self.pad_to_max_length = windows.pad_to_max_length

    @classmethod
    def from_export(cls, assets: Path, config: Mapping[str, Any], *,
                    pad_to_max_length: bool = False) -> "PortableQuestionAnsweringCodec":
        """Reads a question-answering export's `assets.extra` (`export_config.json` already
        read as `config`): `tokenizer/tokenizer.json`, `max_length`, `doc_stride`,
        `max_answer_length`, `version_2_with_negative` and the padding token's id.

        Raises:
            ValueError: A file or field is missing or invalid (the message names it).
        """
        config_file = Path(assets) / EXPORT_CONFIG_FILE
        source = str(assets)
        tokenizer = read_client_tokenizer(
            Path(assets) / str(config.get("client_tokenizer", DEFAULT_CLIENT_TOKENIZER)),
            config_file)
        special = config.get("special_token_ids")
        pad = special.get("pad") if isinstance(special, dict) else None
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ValueError(f"Invalid special_token_ids in {config_file}. Expected "
                             f'{{"pad": <the padding token id>, ...}}. Received: {special!r}')
        max_answer_length = config.get("max_answer_length")
        if isinstance(max_answer_length, bool) or not isinstance(max_answer_length, int) or (
                max_answer_length < 1):
            raise ValueError(f"Invalid max_answer_length in {config_file}. Expected a positive "
                             f"integer. Received: {max_answer_length!r}")
        version_2 = config.get("version_2_with_negative", False)
        if not isinstance(version_2, bool):
            raise ValueError(f"Invalid version_2_with_negative in {config_file}. Expected true "
                             f"or false. Received: {version_2!r}")
        windows = QuestionAnsweringTokenizer.from_config(
            tokenizer, config, pad_token_id=pad, pad_to_max_length=pad_to_max_length,
            source=str(config_file))
        spans = AnswerSpanChooser(max_answer_length, version_2_with_negative=version_2)
        return cls(windows, spans, source=source)

    def encode(self, texts: Sequence[str],
               text_pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The token id inputs (int32 [windows, length]) of the (question, context) pairs.

        Raises:
            ValueError: `text_pairs` (the contexts) is missing or not one per question.
        """
        return self._windows(texts, text_pairs).inputs()

    def fill_request(self, request: Any, texts: Sequence[str],
                     text_pairs: Sequence[str] | None = None
                     ) -> Callable[[Mapping[str, np.ndarray]], list[Prediction]]:
        """Sets the request's token id inputs (every window of every pair); returns the
        decoder of its response's outputs (by alias) into one answer per pair."""
        from serving import tensor_codec

        windows = self._windows(texts, text_pairs)
        for name, values in windows.inputs().items():
            request.inputs[name].CopyFrom(tensor_codec.to_tensor_proto(values,
                                                                       as_tensor_content=True))
        contexts = list(text_pairs)
        return lambda outputs: self.predictions(outputs, windows, contexts)

    def predictions(self, outputs: Mapping[str, np.ndarray], windows: QuestionAnsweringWindows,
                    contexts: Sequence[str]) -> list[Prediction]:
        """One `Prediction(answer, start, end, score)` per pair from the windows' logits.

        Raises:
            ValueError: An output is missing or does not have one logit per window token.
        """
        missing = [name for name in OUTPUTS if name not in outputs]
        if missing:
            raise ValueError(f"The response has no {missing[0]!r} output. Expected the "
                             f"outputs {list(OUTPUTS)} of a question-answering export's token "
                             f"signature. Received: {sorted(outputs)}")
        return self.spans.choose(windows, outputs["start_logits"], outputs["end_logits"],
                                 contexts)

    def _windows(self, texts: Sequence[str],
                 text_pairs: Sequence[str] | None) -> QuestionAnsweringWindows:
        if text_pairs is None:
            raise ValueError(
                f"A question-answering model answers questions about contexts. Expected "
                f"text_pairs: one context per question. Received: none (tokenizer of "
                f"{self.source})")
        return self.windows.windows(list(texts), list(text_pairs))
