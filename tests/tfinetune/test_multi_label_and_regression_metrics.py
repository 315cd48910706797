import math

import pytest

from tfinetune.multi_label_metrics import MultiLabelMetrics
from tfinetune.regression_metrics import RegressionMetrics


def test_multi_label_metrics_match_hand_computed_values():
    labels = ["a", "b", "c"]
    truth = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
    predicted = [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]]
    metrics = MultiLabelMetrics.compute(truth, predicted, labels)
    # exact sets: rows 1 and 3 -> 2/4
    assert metrics.subset_accuracy == pytest.approx(0.5)
    # micro: TP = 3 (a,a,b), FP = 1 (c in row 2), FN = 2 (c row 0, b row 2)
    assert metrics.precision_micro == pytest.approx(3 / 4)
    assert metrics.recall_micro == pytest.approx(3 / 5)
    assert metrics.f1_micro == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    # per label: a P=1 R=1; b P=1 R=1/2; c P=0 R=0
    assert metrics.per_label["a"]["f1"] == pytest.approx(1.0)
    assert metrics.per_label["b"]["f1"] == pytest.approx(2 / 3)
    assert metrics.per_label["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics.f1_macro == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert "Subset accuracy:  0.5000" in metrics.format_text()


def test_regression_metrics_match_hand_computed_values():
    metrics = RegressionMetrics.compute([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 5.0])
    assert metrics.mse == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert metrics.rmse == pytest.approx(math.sqrt(2.25 / 4))
    assert metrics.mae == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    # Spearman = Pearson of ranks [1,2,3,4] vs [1,2.5,2.5,4]: 4.5 / sqrt(5 * 4.5)
    assert metrics.spearman == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    # Pearson: cov 5.25, var(true) 5, var(pred) 7.6875 (sums of squared deviations)
    assert metrics.pearson == pytest.approx(5.25 / math.sqrt(5 * 7.6875))
    constant = RegressionMetrics.compute([1.0, 2.0], [3.0, 3.0])
    assert constant.pearson is None and "undefined" in constant.format_text()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        MultiLabelMetrics.compute([[1, 0]], [[1, 0, 1]], ["a", "b"])
    with pytest.raises(ValueError, match="as many predictions"):
        RegressionMetrics.compute([1.0], [1.0, 2.0])


def test_multi_label_metrics_from_counts_equal_compute():
    """The streaming form `score` uses gives what sklearn gives on the full matrices."""
    import numpy as np

    from tfinetune.multi_label_metrics import MultiLabelMetrics

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (50, 4))
    predicted = rng.integers(0, 2, (50, 4))
    predicted[:, 3] = 0  # a label never predicted: precision 0 by zero division
    labels = ["a", "b", "c", "d"]
    expected = MultiLabelMetrics.compute(truth, predicted, labels)

    streamed = MultiLabelMetrics.from_counts(
        (truth & predicted).sum(0), ((1 - truth) & predicted).sum(0),
        (truth & (1 - predicted)).sum(0), int((truth == predicted).all(axis=1).sum()), 50,
        labels)

    for key, value in expected.as_dict().items():
        if key == "per_label":
            for label in labels:
                for name, number in value[label].items():
                    assert streamed.per_label[label][name] == pytest.approx(number), (label, name)
        elif isinstance(value, float):
            assert getattr(streamed, key) == pytest.approx(value), key
        else:
            assert getattr(streamed, key) == value, key
