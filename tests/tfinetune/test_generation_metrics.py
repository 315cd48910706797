"""GenerationMetrics: corpus BLEU and ROUGE-1/2/L compared with values counted by hand."""

from __future__ import annotations

import math

import pytest

from tfinetune.generation_metrics import GenerationMetrics

HYPOTHESIS = "the cat sat on the mat"
REFERENCE = "the cat sat on a mat"


def test_one_sentence_bleu_and_rouge_equal_hand_counted_n_grams():
    metrics = GenerationMetrics.compute([HYPOTHESIS], [REFERENCE])
    # Clipped n-gram matches / hypothesis n-grams: "the" counts once (the reference has one).
    precisions = [5 / 6, 3 / 5, 2 / 4, 1 / 3]
    # Both have 6 words: no brevity penalty.
    assert metrics.bleu == pytest.approx(100 * math.prod(precisions) ** 0.25, abs=1e-9)
    assert metrics.rouge1 == pytest.approx(100 * 5 / 6)  # P = R = 5/6
    assert metrics.rouge2 == pytest.approx(100 * 3 / 5)  # 3 of 5 bigrams on either side
    assert metrics.rougeL == pytest.approx(100 * 5 / 6)  # LCS "the cat sat on mat"
    assert metrics.gen_len == 6 and metrics.count == 1


def test_bleu_pools_n_gram_counts_over_the_corpus_while_rouge_averages_sentences():
    metrics = GenerationMetrics.compute([HYPOTHESIS, "a b c d"], [REFERENCE, "a b c d"],
                                        generated_lengths=[7, 5])
    precisions = [(5 + 4) / (6 + 4), (3 + 3) / (5 + 3), (2 + 2) / (4 + 2), (1 + 1) / (3 + 1)]
    assert metrics.bleu == pytest.approx(100 * math.prod(precisions) ** 0.25, abs=1e-9)
    assert metrics.rouge1 == pytest.approx(100 * (5 / 6 + 1) / 2)
    assert metrics.rouge2 == pytest.approx(100 * (3 / 5 + 1) / 2)
    assert metrics.gen_len == 6.0
    assert metrics.as_dict() == {"bleu": metrics.bleu, "rouge1": metrics.rouge1,
                                 "rouge2": metrics.rouge2, "rougeL": metrics.rougeL,
                                 "gen_len": 6.0, "count": 2}


def test_short_hypothesis_gets_the_brevity_penalty():
    # 4 of 6 words, all matching: precisions 1, BP = exp(1 - 6/4).
    metrics = GenerationMetrics.compute(["the cat sat on"], [REFERENCE])
    assert metrics.bleu == pytest.approx(100 * math.exp(1 - 6 / 4), abs=1e-9)
    assert metrics.rouge1 == pytest.approx(100 * 2 * 1 * (4 / 6) / (1 + 4 / 6))


def test_exact_copies_score_100_and_empty_outputs_score_0():
    assert GenerationMetrics.compute(["eins zwei drei vier"], ["eins zwei drei vier"]).bleu \
        == pytest.approx(100)
    empty = GenerationMetrics.compute([""], ["eins zwei drei vier"])
    assert (empty.bleu, empty.rouge1, empty.rougeL, empty.gen_len) == (0, 0, 0, 0)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one reference per prediction.*2 predictions, "
                                         "1 references"):
        GenerationMetrics.compute(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        GenerationMetrics.compute([], [])
