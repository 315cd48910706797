"""Session fixtures of the token_classification task (tiny models and data, built offline)."""

from __future__ import annotations
