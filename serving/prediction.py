"""`Prediction`: one text's classification, as returned by `Client.predict`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    """The predicted label of one input.

    Attributes:
        label: The predicted label name.
        label_id: Its class index.
        probabilities: Label name -> probability, in class order.
    """

    label: str
    label_id: int
    probabilities: dict[str, float]
