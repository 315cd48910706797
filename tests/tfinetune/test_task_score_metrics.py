"""`score --label-column` metrics of question-answering and seq2seq models, hand-computed."""

from __future__ import annotations

import pytest

from serving.prediction import Prediction
from tfinetune.task_score_metrics import TaskScoreAccumulator


def test_question_answering_exact_match_and_f1_by_hand():
    accumulator = TaskScoreAccumulator("question-answering")
    # Exact after normalisation (article and punctuation dropped): EM 1, F1 1.
    assert accumulator.add("the Eiffel Tower.", Prediction(answer="Eiffel tower"))
    # Gold "new york city" vs "york": P 1/1, R 1/3 -> F1 0.5; EM 0.
    assert accumulator.add('["new york city"]', Prediction(answer="york"))
    # SQuAD answers mapping; best of the two gold answers: "paris" exact.
    assert accumulator.add({"text": ["in paris", "paris"], "answer_start": [0, 3]},
                           Prediction(answer="Paris"))
    # Unanswerable (empty list) and the model abstains: EM 1, F1 1.
    assert accumulator.add("[]", Prediction(answer=""))
    assert not accumulator.add(None, Prediction(answer="x"))
    assert not accumulator.add(7, Prediction(answer="x"))
    metrics = accumulator.metrics()
    assert metrics.support == 4
    assert metrics.values["exact_match"] == pytest.approx(75.0)
    assert metrics.values["f1"] == pytest.approx(100 * (1 + 0.5 + 1 + 1) / 4)
    assert "exact_match:  75.00" in metrics.format_text()


def test_seq2seq_bleu_and_rouge_against_references():
    accumulator = TaskScoreAccumulator("seq2seq")
    sentence = "the cat sat on the mat"
    assert accumulator.add(sentence, Prediction(generated_text=sentence))
    assert accumulator.add("a dog ran", Prediction(generated_text="a dog ran"))
    assert not accumulator.add(None, Prediction(generated_text="x"))
    metrics = accumulator.metrics()
    assert metrics.support == 2
    assert metrics.values["bleu"] == pytest.approx(100.0)
    assert metrics.values["rougeL"] == pytest.approx(100.0)
    wrong = TaskScoreAccumulator("seq2seq")
    wrong.add("the cat sat on the mat", Prediction(generated_text="completely different words"))
    assert wrong.metrics().values["bleu"] == pytest.approx(0.0)
    assert wrong.metrics().values["rouge1"] == pytest.approx(0.0)


def test_no_rows_no_metrics():
    assert TaskScoreAccumulator("question-answering").metrics() is None
