"""`EntityMetrics` against values counted by hand on fixed examples."""

from __future__ import annotations

import pytest

from tfinetune.entity_metrics import EntityMetrics

TRUE = [
    ["B-PER", "I-PER", "O", "B-LOC", "O"],      # PER(0-1), LOC(3)
    ["B-LOC", "I-LOC", "O", "B-PER", "O"],      # LOC(0-1), PER(3)
    ["O", "B-ORG", "O"],                        # ORG(1)
]
PREDICTED = [
    ["B-PER", "I-PER", "O", "B-LOC", "O"],      # PER ok, LOC ok
    ["B-LOC", "O", "O", "B-PER", "I-PER"],      # LOC(0) wrong span, PER(3-4) wrong span
    ["O", "B-ORG", "B-LOC"],                    # ORG ok, LOC(2) spurious
]


def test_micro_and_per_type_scores_counted_by_hand():
    metrics = EntityMetrics.compute(TRUE, PREDICTED)

    # True entities: 5 (PER 2, LOC 2, ORG 1). Predicted: 6. Correct: PER 1, LOC 1, ORG 1 = 3.
    assert metrics.precision == pytest.approx(3 / 6)
    assert metrics.recall == pytest.approx(3 / 5)
    assert metrics.f1 == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    # Tokens: 13, wrong: sentence 2 positions 1 and 4, sentence 3 position 2 → 10 right.
    assert metrics.accuracy == pytest.approx(10 / 13)
    # LOC: predicted 3 (s1 LOC(3), s2 LOC(0), s3 LOC(2)), correct 1 (s1), true 2.
    assert metrics.per_type == {
        "LOC": {"precision": pytest.approx(1 / 3), "recall": pytest.approx(1 / 2),
                "f1": pytest.approx(0.4), "support": 2},
        "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": pytest.approx(1 / 2), "recall": pytest.approx(1 / 2),
                "f1": pytest.approx(1 / 2), "support": 2},
    }


def test_i_without_b_starts_an_entity_and_a_type_change_splits_it():
    # seqeval's default: I-PER after O starts PER; I-LOC after B-PER starts LOC.
    true = [["I-PER", "I-PER", "O", "B-PER", "I-LOC"]]
    predicted = [["B-PER", "I-PER", "O", "B-PER", "B-LOC"]]

    metrics = EntityMetrics.compute(true, predicted)

    assert (metrics.precision, metrics.recall, metrics.f1) == (1.0, 1.0, 1.0)
    assert metrics.per_type["PER"]["support"] == 2
    assert metrics.accuracy == pytest.approx(3 / 5)


def test_nothing_predicted_scores_zero_without_warnings(recwarn):
    metrics = EntityMetrics.compute([["B-PER", "O"]], [["O", "O"]])

    assert (metrics.precision, metrics.recall, metrics.f1, metrics.accuracy) == (0, 0, 0, 0.5)
    assert metrics.per_type == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                        "support": 1}}
    assert not [w for w in recwarn if "seqeval" in str(w.filename)]


def test_as_dict_and_text_form():
    metrics = EntityMetrics.compute(TRUE, PREDICTED)

    as_dict = metrics.as_dict()
    assert list(as_dict) == ["precision", "recall", "f1", "accuracy", "per_type"]
    assert as_dict["per_type"]["ORG"]["support"] == 1
    lines = metrics.as_text().splitlines()
    assert lines[0].split() == ["type", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["LOC", "0.3333", "0.5000", "0.4000", "2"]
    assert lines[4].split() == ["micro", "avg", "0.5000", "0.6000", "0.5455", "5"]
    assert lines[5] == "token accuracy 0.7692"


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        EntityMetrics.compute([["O", "B-PER"]], [["O"]])
