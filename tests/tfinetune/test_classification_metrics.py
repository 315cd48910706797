import json

import numpy as np
import pytest

from tfinetune.classification_metrics import ClassificationMetrics

# true a a a b b c / predicted a b a b c c  ->  hand-computed below
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 1, 0, 1, 2, 2]
LABELS = ["a", "b", "c"]


def test_hand_computed_values():
    metrics = ClassificationMetrics.compute(Y_TRUE, Y_PRED, LABELS)
    assert metrics.confusion_matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics.accuracy == pytest.approx(4 / 6)
    # precision a=2/2, b=1/2, c=1/2; recall a=2/3, b=1/2, c=1/1
    assert metrics.precision == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics.recall == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    f1_a, f1_b, f1_c = 2 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5
    assert metrics.f1 == pytest.approx((f1_a + f1_b + f1_c) / 3)
    assert metrics.labels == LABELS
    assert metrics.support == 6
    assert metrics.per_label["a"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": f1_a, "support": 3})
    assert metrics.per_label["c"]["support"] == 1
    assert all(type(value) is float for value in
               (metrics.accuracy, metrics.precision, metrics.recall, metrics.f1))


def test_labels_never_seen_count_as_zero_in_macro_average():
    metrics = ClassificationMetrics.compute([0, 1], [0, 1], ["x", "y", "z"])
    assert metrics.accuracy == 1.0
    assert metrics.precision == pytest.approx(2 / 3)
    assert metrics.per_label["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics.confusion_matrix == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_numpy_ids_accepted():
    metrics = ClassificationMetrics.compute(np.array([0, 1, 1]), np.array([0, 1, 0]), ["n", "p"])
    assert metrics.accuracy == pytest.approx(2 / 3)


def test_from_confusion_matrix_equals_compute():
    from_counts = ClassificationMetrics.from_confusion_matrix(
        [[2, 1, 0], [0, 1, 1], [0, 0, 1]], LABELS)
    assert from_counts == ClassificationMetrics.compute(Y_TRUE, Y_PRED, LABELS)


def test_as_dict_is_json_ready():
    metrics = ClassificationMetrics.compute(Y_TRUE, Y_PRED, LABELS)
    data = json.loads(json.dumps(metrics.as_dict()))
    assert data == {
        "accuracy": metrics.accuracy, "precision": metrics.precision, "recall": metrics.recall,
        "f1": metrics.f1, "confusion_matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]],
        "labels": LABELS, "support": 6, "per_label": metrics.per_label,
    }


def test_format_text_has_aligned_confusion_matrix():
    metrics = ClassificationMetrics.compute(
        [0] * 120 + [1] * 5, [0] * 100 + [1] * 20 + [1] * 5, ["negative", "very positive"])
    text = metrics.format_text()
    assert "Accuracy:   0.8400" in text
    assert "F1:" in text and "Recall:" in text and "Precision:" in text
    lines = text.splitlines()
    start = lines.index("Confusion matrix (rows: true label, columns: predicted label)")
    table = lines[start + 1:]
    assert table == [
        "true \\ predicted  negative  very positive",
        "negative               100             20",
        "very positive            0              5",
    ]
    per_label = lines[lines.index("Label          Precision  Recall      F1  Support"):start - 1]
    assert per_label[1].startswith("negative          1.0000  0.8333  0.9091      120")


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([0, 1], [0], "as many predictions"),
        ([], [], "at least one example"),
        ([0, 2], [0, 1], r"true label ids in 0\.\.1 .* Received: \[2\]"),
        ([0, 1], [0, -1], r"predicted label ids .* Received: \[-1\]"),
        (["a"], [0], "Received: \\['a'\\]"),
    ],
)
def test_invalid_input(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        ClassificationMetrics.compute(y_true, y_pred, ["n", "p"])


def test_bad_confusion_matrix_shape():
    with pytest.raises(ValueError, match="Expected a 2x2 confusion matrix"):
        ClassificationMetrics.from_confusion_matrix([[1, 2, 3]], ["n", "p"])
