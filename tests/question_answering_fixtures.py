"""Session fixtures of the question_answering task (tiny models and data, built offline)."""

from __future__ import annotations
