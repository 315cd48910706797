"""`split_words`: the words of a text as the token-classification export's graph splits them
(BERT's basic tokenization), for clients of its `--portable` export that tokenise themselves.

The default NER export splits raw text with `tensorflow_text.regex_split_with_offsets` and
`export.token_classifier_serving_module.SPLIT_PATTERN`: whitespace (tab, newline, return and
Unicode separators, `\\p{Z}`) separates words and is dropped; ASCII punctuation, Unicode
punctuation (`\\p{P}`) and CJK ideographs are words of their own; everything else joins the
word around it. Offsets are UTF-8 byte offsets into the text (`end` exclusive), as the graph
returns them. Like the graph's split (RE2 reads the text as a C string), a NUL character ends
the text: nothing after it is a word. Pure Python (no TensorFlow ops), so that a client
without tensorflow-text splits the same words; tested against the graph's split.
"""

from __future__ import annotations

import unicodedata

#: CJK ideograph blocks that BERT's basic tokenizer makes words of their own.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
#: ASCII punctuation as the pattern's ranges `[!-/]`, `[:-@]`, `[\\[-``]`, `[{-~]` give it.
_ASCII_PUNCTUATION = frozenset(chr(c) for low, high in ((0x21, 0x2F), (0x3A, 0x40),
                                                        (0x5B, 0x60), (0x7B, 0x7E))
                               for c in range(low, high + 1))


def is_separator(character: str) -> bool:
    """Whitespace that separates words and is dropped: tab, newline, return, `\\p{Z}`."""
    return character in "\t\n\r" or unicodedata.category(character).startswith("Z")


def is_own_word(character: str) -> bool:
    """Punctuation and CJK ideographs: each one a word of its own."""
    if character in _ASCII_PUNCTUATION or unicodedata.category(character).startswith("P"):
        return True
    code = ord(character)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """`(word, byte start, byte end)` of every word of `text`, in order."""
    text = text.split("\x00", 1)[0]
    words: list[tuple[str, int, int]] = []
    offset = 0
    start_byte = start_char = -1

    def close(end_char: int, end_byte: int) -> None:
        nonlocal start_char, start_byte
        if start_char >= 0:
            words.append((text[start_char:end_char], start_byte, end_byte))
        start_char = start_byte = -1

    for index, character in enumerate(text):
        size = len(character.encode("utf-8"))
        if is_separator(character):
            close(index, offset)
        elif is_own_word(character):
            close(index, offset)
            words.append((character, offset, offset + size))
        elif start_char < 0:
            start_char, start_byte = index, offset
        offset += size
    close(len(text), offset)
    return words
