"""Small hand-written sentiment data set (negative/positive reviews) for the demo and tests."""

from pathlib import Path

DEMO_DIR = Path(__file__).parent
