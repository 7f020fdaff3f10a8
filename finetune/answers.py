"""Short-answer scoring: VQA/SQuAD-style normalisation, normalised exact match and whole-word "contains"."""
from __future__ import annotations

import re
import string
import unicodedata

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])}


def normalize_answer(text: str) -> str:
    """VQA/SQuAD-style normalisation: NFKC, lower case, punctuation and articles removed, number words as digits,
    whitespace collapsed. "The Digit: Seven." -> "digit 7"."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(NUMBER_WORDS.get(w, w) for w in text.split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def contains(prediction: str, reference: str) -> bool:
    """The normalised reference occurs in the normalised prediction as whole words ("7" is not in "17")."""
    ref = normalize_answer(reference)
    if not ref:
        return False
    return f" {ref} " in f" {normalize_answer(prediction)} "
