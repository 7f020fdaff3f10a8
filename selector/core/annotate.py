"""Set one top-level member of a JSON object in its exact source text, leaving every other byte as it was: what
`select --annotate` uses to add `"mmselect": {"score", "rank", "group"}` to each kept record without re-serialising
(and so changing) the record's own values.
"""
from __future__ import annotations

import json
import re


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()


def members(text: str) -> tuple[list[tuple[str, int, int]], int]:
    """The top-level members of the JSON object `text` as (key, start of the key, end of the value), and the
    position of its closing brace. Raises ValueError when `text` is not one JSON object."""
    i = _skip(text, 0)
    if text[i:i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _skip(text, i + 1)
    spans: list[tuple[str, int, int]] = []
    if text[i:i + 1] == "}":
        return spans, i
    while True:
        key, j = _DECODER.raw_decode(text, i)
        j = _skip(text, j)
        if not isinstance(key, str) or text[j:j + 1] != ":":
            raise ValueError(f"expected a key and ':' at {j}")
        _, end = _DECODER.raw_decode(text, _skip(text, j + 1))
        spans.append((key, i, end))
        k = _skip(text, end)
        if text[k:k + 1] == "}":
            return spans, k
        if text[k:k + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at {k}")
        i = _skip(text, k + 1)


def without_member(text: str, key: str) -> str:
    """`text` without its top-level member `key` (and the comma that joined it); unchanged if absent."""
    spans, _ = members(text)
    for n, (k, start, end) in enumerate(spans):
        if k != key:
            continue
        if n + 1 < len(spans):  # cut up to the next member's key
            return text[:start] + text[spans[n + 1][1]:]
        if n > 0:  # the last member: cut from the end of the previous value
            return text[:spans[n - 1][2]] + text[end:]
        return text[:start] + text[_skip(text, end):]
    return text


def with_member(data: bytes, key: str, value) -> bytes:
    """The JSON object `data` (UTF-8) with the top-level member `key` set to `value`: an existing `key` member is
    removed, the new one goes after the last member; every other byte is kept."""
    text = without_member(data.decode("utf-8"), key)
    spans, close = members(text)
    member = json.dumps(key) + ": " + json.dumps(value, ensure_ascii=False, allow_nan=False)
    if spans:
        end = spans[-1][2]
        text = text[:end] + ", " + member + text[end:]
    else:
        text = text[:close] + member + text[close:]
    return text.encode("utf-8")
