"""`GenerationMetrics`: BLEU and ROUGE of generated texts against reference texts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class GenerationMetrics:
    """Corpus metrics of generated texts, all on a 0-100 scale except `gen_len`.

    Attributes:
        bleu: sacrebleu's corpus BLEU (default 13a tokenisation, exponential smoothing off:
            sacrebleu's defaults), one reference per text.
        rouge1, rouge2, rougeL: the mean F-measure of rouge-score's ROUGE-1, ROUGE-2 and ROUGE-L
            (its default tokenizer: lower-cased, non-alphanumeric characters dropped; no
            stemming) × 100.
        gen_len: Mean number of generated tokens (special and padding tokens excluded).
        count: Texts scored.
    """

    bleu: float
    rouge1: float
    rouge2: float
    rougeL: float
    gen_len: float
    count: int

    @classmethod
    def compute(cls, predictions: Sequence[str], references: Sequence[str],
                generated_lengths: Sequence[int] | None = None) -> "GenerationMetrics":
        """Scores `predictions[i]` against `references[i]`.

        Args:
            predictions: The generated texts.
            references: One reference text per prediction.
            generated_lengths: Tokens generated per prediction (for `gen_len`); default: words.

        Raises:
            ValueError: the sequences differ in length or are empty.
        """
        import sacrebleu
        from rouge_score import rouge_scorer

        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references) or not predictions:
            raise ValueError(
                "Expected one reference per prediction and at least one of each. Received: "
                f"{len(predictions)} predictions, {len(references)} references")
        if generated_lengths is None:
            generated_lengths = [len(text.split()) for text in predictions]
        bleu = sacrebleu.corpus_bleu(predictions, [references]).score
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
        totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
        for prediction, reference in zip(predictions, references):
            scores = scorer.score(reference, prediction)
            for key in totals:
                totals[key] += scores[key].fmeasure
        count = len(predictions)
        return cls(bleu=float(bleu), rouge1=100.0 * totals["rouge1"] / count,
                   rouge2=100.0 * totals["rouge2"] / count,
                   rougeL=100.0 * totals["rougeL"] / count,
                   gen_len=float(sum(generated_lengths)) / count, count=count)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
