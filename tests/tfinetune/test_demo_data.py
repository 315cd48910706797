import collections
import csv

import pytest

from tfinetune.demo import DEMO_DIR
from tfinetune.table_reader import TableReader

LABELLED = {"train.csv": 320, "validation.csv": 80}


def read(name):
    reader = TableReader(DEMO_DIR / name)
    return reader.columns, [row.values for row in reader]


@pytest.mark.parametrize("name, size", LABELLED.items())
def test_labelled_files_are_balanced(name, size):
    columns, rows = read(name)
    assert columns == ["text", "label"]
    assert len(rows) == size
    assert collections.Counter(row["label"] for row in rows) == {
        "negative": size // 2, "positive": size // 2}


def test_unlabelled_file():
    columns, rows = read("unlabelled.csv")
    assert columns == ["id", "text"]
    assert [row["id"] for row in rows] == [str(i) for i in range(1, 41)]


def test_texts_are_short_reviews_without_duplicates_across_files():
    texts = [row["text"] for name in [*LABELLED, "unlabelled.csv"] for row in read(name)[1]]
    assert len(texts) == 440
    normalized = [" ".join(text.lower().split()) for text in texts]
    assert len(set(normalized)) == len(texts)
    assert all(5 <= len(text.split()) <= 25 for text in texts)


def test_files_are_plain_utf8_csv():
    for name in [*LABELLED, "unlabelled.csv"]:
        data = (DEMO_DIR / name).read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data
        with open(DEMO_DIR / name, newline="", encoding="utf-8") as f:
            assert sum(1 for _ in csv.reader(f)) == LABELLED.get(name, 40) + 1
