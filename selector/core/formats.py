"""Instruction-file formats: detection, and turning one parsed record into the fields every metric reads.

Each record is reduced to `(id, instruction, answer, images)` or a rejection reason. The original JSON text is
kept separately, so writing a record back reproduces its JSON values exactly, whatever fields it carries.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from selector.core.errors import FormatError

CC_SBU_INSTRUCTION = "Describe this image in detail."
SCHEMAS = ("llava", "sharegpt", "messages", "cc_sbu")
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant"}
SYSTEM_ROLES = {"system"}
MESSAGE_ROLES = {"user", "assistant", "system", "developer"}
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark (Windows editors write one): read past, never part of a record


@dataclass(frozen=True)
class Layout:
    """Where records live in a file: `container` is 'jsonl', 'json' (a list) or 'cc_sbu' (annotations in a dict)."""

    container: str
    schema: str


@dataclass(frozen=True)
class Parsed:
    id: str | None  # the id key (see `parse_record`); None: the record gets an automatic id `line-N`
    instruction: str
    answer: str
    images: list[str]
    reason: str | None = None
    id_kind: int = 0  # ID_KINDS: 0 a string id, 1 a number's JSON text, 2 automatic


def reject(reason: str, rid: str | None = None) -> Parsed:
    return Parsed(rid, "", "", [], reason, 2 if rid is None else 0)


def resolve_input(path: Path) -> Path:
    """A cc_sbu_align folder stands for its filter_cap.json."""
    if path.is_dir():
        cap = path / "filter_cap.json"
        if cap.is_file():
            return cap
        raise FormatError(f"{path} is a folder without filter_cap.json; pass the instruction file itself")
    if not path.exists():
        raise FormatError(f"input file {path} does not exist")
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise FormatError(f"input file {path} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):  # a FIFO, a device, /dev/stdin: records are re-read by byte range, so not usable
        raise FormatError(f"input {path} is not a regular file (a pipe or device cannot be re-read); save it to a "
                          "file first")
    if not os.access(path, os.R_OK):
        raise FormatError(f"input file {path} is not readable (permission denied)")
    return path


def default_images_root(path: Path, layout: Layout) -> Path:
    """cc_sbu_align keeps images in `image/` beside filter_cap.json; other formats resolve against the file's folder."""
    if layout.schema == "cc_sbu":
        return path.parent / "image"
    return path.parent


def schema_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "annotations" in obj:
        return "cc_sbu"
    if "messages" in obj:
        return "messages"
    if "conversations" in obj:
        return "llava" if ("image" in obj or "images" in obj) else "sharegpt"
    return None


def _lines(path: Path, n: int, limit: int = 1 << 26) -> list[bytes]:
    """The first `n` non-blank lines (each read whole, up to `limit` bytes)."""
    out = []
    with open(path, "rb") as f:
        while len(out) < n:
            line = f.readline(limit)
            if not line:
                break
            if not out:
                line = line.removeprefix(BOM)  # the mark is not the file's first byte
            if line.strip():
                out.append(line)
    return out


def _is_json(line: bytes, kind: type | None = None) -> bool:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return kind is None or isinstance(value, kind)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        while pos > 0:
            step = min(pos, 4096)
            pos -= step
            f.seek(pos)
            tail = f.read(step).rstrip()
            if tail:
                return tail[-1:]
    return b""


def detect_layout(path: Path, schema: str | None = None, sample_lines: int = 50) -> Layout:
    """Sniff the container and the schema; `schema` overrides the schema.

    A JSONL file is recognised by its lines, not by its first line alone: a first line that is invalid JSON,
    invalid UTF-8, very long, or not an object costs that one record, exactly as it would anywhere else."""
    if schema is not None and schema not in SCHEMAS:
        raise FormatError(f"unknown format {schema!r}; choose one of {', '.join(SCHEMAS)}")
    lines = _lines(path, 8)
    first = lines[0].lstrip()[:1] if lines else b""
    later_objects = any(_is_json(ln, dict) for ln in lines[1:])
    if not lines:
        container = "jsonl"
    elif first == b"[":
        if len(lines) == 1:
            container = "json"  # a JSON list on one line
        elif _is_json(lines[0]):
            container = "jsonl"  # a complete value on line 1 and more lines: one record per line
        else:
            container = "json" if (_last_byte(path) == b"]" or not later_objects) else "jsonl"
    elif first == b"{":
        container = "jsonl"
        if _is_json(lines[0]):
            if len(lines) == 1 and path.suffix == ".json" and "annotations" in orjson.loads(lines[0]):
                container = "cc_sbu"  # a one-line {"annotations": [...]}
        elif not later_objects and (lines[0].strip() == b"{" or path.suffix == ".json"):
            # A pretty-printed single object (cc_sbu_align's filter_cap.json) spreads over lines that are not
            # objects of their own; JSONL has objects on the following lines.
            container = "cc_sbu"
    elif later_objects:
        container = "jsonl"
    else:
        raise FormatError(f"{path}: does not start with '[' or '{{': not a JSON or JSONL instruction file")
    if container == "cc_sbu":
        return Layout("cc_sbu", "cc_sbu")
    if schema is None:
        schema = _sniff_schema(path, container, sample_lines)
    if schema == "cc_sbu":
        raise FormatError(f"{path}: format cc_sbu needs filter_cap.json ({{'annotations': [...]}})")
    return Layout(container, schema)


def _sniff_schema(path: Path, container: str, sample_lines: int) -> str:
    seen: list[str] = []
    if container == "json":
        try:
            data = orjson.loads(path.read_bytes().removeprefix(BOM))
        except orjson.JSONDecodeError:
            return "llava"  # the reader reports the syntax error with its position
        for obj in data[:sample_lines] if isinstance(data, list) else []:
            s = schema_of(obj)
            if s:
                seen.append(s)
    else:
        with open(path, "rb") as f:
            for i, line in enumerate(f):
                if i >= sample_lines * 4 or len(seen) >= sample_lines:
                    break
                try:
                    s = schema_of(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
                if s:
                    seen.append(s)
    if not seen:
        return "llava"
    if "messages" in seen and seen.count("messages") >= len(seen) / 2:
        return "messages"
    return "llava" if "llava" in seen else "sharegpt"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------------------------------------ one record
# Every record, whatever file or parse path it comes from, goes through `parse_record` (the Arrow fast path in
# fastjsonl.py hands it every line it cannot decide exactly), so a line's verdict never depends on where it sits.
_KEY_TOKEN = re.compile(rb'"[ \t\r\n]*:')  # the end of an object key; also matches `\":` inside a string (harmless)
ID_KINDS = {"string": 0, "json": 1, "auto": 2}  # the id column's `id_kind`: a string id, a number's JSON text, none


class _Number(str):
    """A JSON number token, kept as its exact text (Python's json calls parse_int / parse_float with it)."""


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _exact(data: bytes) -> Any:
    """`data` parsed by Python's json: duplicate keys raise `_DuplicateKey`, numbers stay their exact text."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_int=_Number,
                      parse_float=_Number, parse_constant=_reject_constant)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_text(value: Any) -> str:
    """A JSON value as compact JSON text (for ids and reasons: never a Python repr)."""
    return orjson.dumps(value).decode() if not isinstance(value, _Number) else str(value)


SHOWN_CHARS = 120  # an offending value quoted in a rejection reason keeps its first and last 60 characters


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """An offending value as a reason quotes it: a string or a float as its repr (JSON would call NaN 'null'),
    anything else as JSON text, `shortened`."""
    return shortened(repr(value) if isinstance(value, (str, float)) else json_text(value), limit)


def shortened(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` whole when it is short, else its head and tail around a count of what was left out: a reason keeps
    the words that say what was wrong (the value is shortened, never the message)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}...[{len(text) - 2 * half:,} characters]...{text[-half:]}"


def _id_of(value: Any) -> tuple[str | None, int, str | None]:
    """(id key, id kind, rejection reason) of a record's id value. Strings are their own key; numbers are keyed
    by their exact JSON text (so 1 and "1" differ, and 2**64 + 1 survives); no id means an automatic one."""
    if value is None:
        return None, ID_KINDS["auto"], None
    if isinstance(value, _Number):  # before str: a _Number is a str
        return str(value), ID_KINDS["json"], None
    if isinstance(value, str):
        return value, ID_KINDS["string"], None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), ID_KINDS["json"], None  # orjson parses integers of up to 64 bits exactly
    return json_text(value), ID_KINDS["json"], f"id must be a string or a number, got {shown(value)}"


def parse_record(data: bytes, line: int, schema: str) -> Parsed:
    """The verdict on one JSON record (a JSONL line, or one item of a JSON list, as its exact bytes)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return reject(f"invalid UTF-8 bytes at byte {uexc.start}")
        return reject(f"invalid JSON: {exc}")
    if not isinstance(obj, dict):
        return reject("annotation is not a JSON object" if schema == "cc_sbu" else "record is not a JSON object")
    id_field = "image_id" if schema == "cc_sbu" else "id"
    rid = obj.get(id_field)
    exact = None
    if isinstance(rid, float) or len(_KEY_TOKEN.findall(data)) != _count_keys(obj):
        # A key token too many: a duplicate key (orjson keeps the last silently), or `\":` inside a string. A
        # float id: its exact text (orjson turns integers beyond 64 bits into floats, 1.0 and 1.00 differ).
        try:
            exact = _exact(data)
        except _DuplicateKey as exc:
            return reject(f"duplicate key {json_text(exc.key)} in the record", rid if isinstance(rid, str) else None)
        except (ValueError, RecursionError) as exc:
            return reject(f"invalid JSON: {exc}")
        rid = exact.get(id_field)
    key, kind, why = _id_of(rid)
    if why:
        return Parsed(key, "", "", [], why, kind)
    parsed = PARSERS[schema](obj, key)
    return parsed if parsed.id_kind == kind else Parsed(parsed.id, parsed.instruction, parsed.answer, parsed.images,
                                                      parsed.reason, kind)


def _image_fields(obj: dict) -> list[str] | str:
    """Every path in the record's `image` and `images` fields (both are read: each is checked), or a reason."""
    out: list[str] = []
    for key in ("image", "images"):
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list) and all(isinstance(i, str) for i in value):
            out.extend(value)
        else:
            return "image field is not a path or a list of paths"
    return out


def content_key(obj: Any, schema: str) -> bytes:
    """What makes two records the same training sample: the whole conversation (every turn, system prompts
    included) and its images; not the id or other metadata. Exact bytes, for the duplicate-content check."""
    if not isinstance(obj, dict):
        return orjson.dumps(obj)
    keep = ("caption", "image_id") if schema == "cc_sbu" else \
        ("conversations", "messages", "system", "tools", "image", "images")
    return orjson.dumps({k: obj[k] for k in keep if k in obj and not (schema == "cc_sbu" and k == "image_id")},
                        option=orjson.OPT_SORT_KEYS)


def parse_conversations(obj: Any, rid: str | None) -> Parsed:
    """LLaVA / ShareGPT: {"id", "image"?, "images"?, "conversations": [{"from", "value"}]}."""
    if not isinstance(obj, dict):
        return reject("record is not a JSON object")
    conv = obj.get("conversations")
    if not isinstance(conv, list) or not conv:
        return reject("no conversation", rid)
    user, answers = [], []
    for turn_no, turn in enumerate(conv, 1):
        if not isinstance(turn, dict):
            return reject(f"turn {turn_no} is not an object", rid)
        role = turn.get("from")
        if role is None:
            role = turn.get("role")
        if not isinstance(role, str):  # a list or object is not hashable, a number is no role: all unknown
            return reject(f"unknown role {shown(role)} (turn {turn_no})", rid)
        value = turn.get("value")
        raw = turn.get("content") if value is None else value
        text = _text(raw)
        if raw is not None and text is None:  # a list, number or object where the turn's text belongs
            return reject(f"turn {turn_no} value is {type(raw).__name__}, not text", rid)
        if role in USER_ROLES:
            user.append(text or "")
        elif role in ASSISTANT_ROLES:
            if text is None or not text.strip():
                return reject(f"empty answer (turn {turn_no})", rid)
            answers.append(text)
        elif role not in SYSTEM_ROLES:
            return reject(f"unknown role {shown(role)} (turn {turn_no})", rid)
    if not answers:
        return reject("no answer", rid)
    images = _image_fields(obj)
    if isinstance(images, str):
        return reject(images, rid)
    instruction = user[0].replace("<image>", "").strip() if user else ""
    return Parsed(rid, instruction, "\n\n".join(answers), images)


def _message_parts(content: Any) -> tuple[list[str], list[str]] | str:
    """Text and local image paths of an OpenAI-style content value, or a rejection reason."""
    if isinstance(content, str):
        return [content], []
    if not isinstance(content, list):
        return "message content is neither text nor a list of parts"
    texts, images = [], []
    for part in content:
        if not isinstance(part, dict):
            return "content part is not an object"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                return "text part holds no text"
            texts.append(text or "")
        elif kind in ("image_url", "image", "input_image"):
            refs = [part.get(k) for k in ("image_url", "image", "path", "url") if part.get(k) is not None]
            refs = [r.get("url") if isinstance(r, dict) else r for r in refs]
            if not refs or not all(isinstance(r, str) and r for r in refs):
                return "image part names no file"
            for ref in refs:  # every field that names a file is checked, not only the first one read
                if ref.startswith(("http://", "https://", "data:")):
                    return "image part is not a local file (only local paths are supported)"
                images.append(ref.removeprefix("file://"))
        else:
            return f"unknown content part type {shown(kind)}"
    return texts, images


def parse_messages(obj: Any, rid: str | None) -> Parsed:
    """OpenAI-style chat: {"messages": [{"role", "content": str | [parts]}]}; image parts name local files, and
    top-level `image` / `images` fields (LLaMA-Factory style) are read too."""
    if not isinstance(obj, dict):
        return reject("record is not a JSON object")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return reject("no conversation", rid)
    images = _image_fields(obj)
    if isinstance(images, str):
        return reject(images, rid)
    user, answers = [], []
    for turn_no, msg in enumerate(msgs, 1):
        if not isinstance(msg, dict):
            return reject(f"message {turn_no} is not an object", rid)
        role = msg.get("role")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:
            return reject(f"unknown role {shown(role)} (message {turn_no})", rid)
        parts = _message_parts(msg.get("content"))
        if isinstance(parts, str):
            return reject(f"{parts} (message {turn_no})", rid)
        texts, imgs = parts
        images.extend(imgs)
        text = "\n".join(texts)
        if role == "user":
            user.append(text)
        elif role == "assistant":
            if not text.strip():
                return reject(f"empty answer (message {turn_no})", rid)
            answers.append(text)
    if not answers:
        return reject("no answer", rid)
    return Parsed(rid, user[0].strip() if user else "", "\n\n".join(answers), images)


def parse_cc_sbu(obj: Any, rid: str | None) -> Parsed:
    """MiniGPT-4 cc_sbu_align annotation: {"image_id", "caption"}; the image is `{image_id}.jpg`."""
    if not isinstance(obj, dict):
        return reject("annotation is not a JSON object")
    if rid is None:
        return reject("annotation has no image_id")
    caption = obj.get("caption")
    if caption is None:
        return reject("no answer", rid)
    if not isinstance(caption, str):
        return reject(f"caption is {type(caption).__name__}, not text", rid)
    if not caption.strip():
        return reject("empty answer", rid)
    return Parsed(rid, CC_SBU_INSTRUCTION, caption, [f"{rid}.jpg"])


PARSERS = {"llava": parse_conversations, "sharegpt": parse_conversations,
           "messages": parse_messages, "cc_sbu": parse_cc_sbu}
