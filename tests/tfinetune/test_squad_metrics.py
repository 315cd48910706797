"""SQuAD exact match and F1 against values computed by hand on fixed answers."""

from __future__ import annotations

import pytest

from tfinetune.squad_metrics import SquadMetrics
from tfinetune.squad_metrics import exact_match
from tfinetune.squad_metrics import normalize_answer
from tfinetune.squad_metrics import token_f1


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an   apple, a pear and THE plum. ", "apple pear and plum"),
    ("theatre", "theatre"),  # an article only as a whole word
    ("Paris's", "pariss"),  # punctuation is removed, not replaced by a space
    ("", ""),
])
def test_normalisation_is_the_official_one(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_of_single_answers():
    assert exact_match("the city of Paris", "City of paris.") == 1
    assert exact_match("Paris", "in Paris") == 0
    # gold "city of paris" (3 tokens), prediction "paris france" (2): 1 common token.
    # precision 1/2, recall 1/3 -> F1 = 2 * (1/2 * 1/3) / (1/2 + 1/3) = 0.4
    assert token_f1("the city of Paris", "Paris, France") == pytest.approx(0.4)
    # A repeated token counts as many times as it appears in both.
    # gold "a b b" -> ["b", "b"] after dropping "a"; prediction "b b b": common 2.
    # precision 2/3, recall 2/2 -> F1 = 0.8
    assert token_f1("a b b", "b b b") == pytest.approx(0.8)
    assert token_f1("paris", "london") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "paris") == 0.0
    assert token_f1("paris", "") == 0.0


def test_dataset_scores_take_the_best_gold_answer_and_are_percentages():
    gold = [["Paris", "the city of Paris"], ["France"], ["a long river"]]
    predictions = ["city of paris", "in France", "river"]
    metrics = SquadMetrics.compute(gold, predictions)
    # EM: 1 (matches the second gold), 0, 0 -> 33.33
    assert metrics.exact_match == pytest.approx(100 / 3)
    # F1: 1.0; "france" vs "in france": p 1/2, r 1 -> 2/3; "long river" vs "river": p 1,
    # r 1/2 -> 2/3. Mean (1 + 2/3 + 2/3) / 3 = 7/9.
    assert metrics.f1 == pytest.approx(100 * 7 / 9)
    assert metrics.total == 3
    assert metrics.as_dict() == {"exact_match": pytest.approx(100 / 3),
                                 "f1": pytest.approx(700 / 9), "total": 3}


def test_unanswerable_questions_are_scored_as_squad_v2():
    # Gold answers that normalise to nothing ("the", ".") count as no answer.
    gold = [[], ["the", "."], ["Paris"], ["Rome"]]
    predictions = ["", "Paris", "Paris", ""]
    metrics = SquadMetrics.compute(gold, predictions)
    assert metrics.exact_match == pytest.approx(50.0)  # 1, 0, 1, 0
    assert metrics.f1 == pytest.approx(50.0)
    values = metrics.as_dict()
    assert values["has_answer_exact_match"] == pytest.approx(50.0)
    assert values["has_answer_total"] == 2
    assert values["no_answer_exact_match"] == pytest.approx(50.0)
    assert values["no_answer_f1"] == pytest.approx(50.0)
    assert values["no_answer_total"] == 2


def test_lengths_must_match():
    with pytest.raises(ValueError, match="1 predictions for 2 questions"):
        SquadMetrics.compute([["a"], ["b"]], ["a"])
