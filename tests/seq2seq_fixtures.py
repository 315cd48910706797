"""Session fixtures of the seq2seq task (tiny models and data, built offline)."""

from __future__ import annotations
