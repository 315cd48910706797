"""`ServableOptions`: the server-wide settings that change how every loaded version runs."""

from __future__ import annotations

import dataclasses
from typing import Optional

from serving.batch_scheduler import BatchScheduler


@dataclasses.dataclass(frozen=True)
class ServableOptions:
    """Settings `ModelManager` hands to every `Servable.load`.

    Attributes:
        batch_scheduler: With `--enable_batching`, the server's shared `BatchScheduler`: every
            version then batches the session runs of each of its signatures on it.
        signature_method_name_check: `--enable_signature_method_name_check`: Predict refuses
            signatures whose method is not predict/classify/regress, Classify and Regress refuse
            signatures of another method (TF Serving's texts and codes).
        serialization_as_tensor_content: `--enable_serialization_as_tensor_content`: Predict
            writes output tensors as `tensor_content` instead of the typed `*_val` fields.
    """

    batch_scheduler: Optional[BatchScheduler] = None
    signature_method_name_check: bool = False
    serialization_as_tensor_content: bool = False
