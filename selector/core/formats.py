"""Instruction-file formats: detection, and turning one parsed record into the fields every metric reads.

Each record is reduced to `(id, instruction, answer, images)` or a rejection reason. The original JSON text is
kept separately, so writing a record back reproduces its JSON values exactly, whatever fields it carries.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class Layout:
    """Where records live in a file: `container` is 'jsonl', 'json' (a list) or 'cc_sbu' (annotations in a dict)."""

    container: str
    schema: str


@dataclass(frozen=True)
class Parsed:
    id: str | None
    instruction: str
    answer: str
    images: list[str]
    reason: str | None = None


def reject(reason: str, rid: Any = None) -> Parsed:
    return Parsed(None if rid is None else str(rid), "", "", [], reason)


def resolve_input(path: Path) -> Path:
    """A cc_sbu_align folder stands for its filter_cap.json."""
    if path.is_dir():
        cap = path / "filter_cap.json"
        if cap.is_file():
            return cap
        raise FormatError(f"{path} is a folder without filter_cap.json; pass the instruction file itself")
    if not path.exists():
        raise FormatError(f"input file {path} does not exist")
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


def detect_layout(path: Path, schema: str | None = None, sample_lines: int = 50) -> Layout:
    """Sniff the container from the first bytes and the schema from the first records; `schema` overrides."""
    if schema is not None and schema not in SCHEMAS:
        raise FormatError(f"unknown format {schema!r}; choose one of {', '.join(SCHEMAS)}")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    first = head.lstrip()[:1]
    if first == b"[":
        container = "json"
    elif first == b"{":
        container = "jsonl"
        line = head.lstrip().split(b"\n", 1)[0]
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            container = "cc_sbu"  # a pretty-printed single object, e.g. filter_cap.json
        if path.suffix == ".json" and container == "jsonl":
            try:
                whole = orjson.loads(path.read_bytes())
                if isinstance(whole, dict) and "annotations" in whole:
                    container = "cc_sbu"
            except orjson.JSONDecodeError:
                pass
    elif not head.strip():
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
            data = orjson.loads(path.read_bytes())
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


def parse_conversations(obj: Any, line: int) -> Parsed:
    """LLaVA / ShareGPT: {"id", "image"?, "conversations": [{"from", "value"}]}."""
    if not isinstance(obj, dict):
        return reject("record is not a JSON object")
    rid = obj.get("id")
    if rid is None:
        rid = f"line-{line}"
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
        value = turn.get("value")
        text = _text(turn.get("content") if value is None else value)
        if role in USER_ROLES:
            user.append(text or "")
        elif role in ASSISTANT_ROLES:
            if text is None or not text.strip():
                return reject(f"empty answer (turn {turn_no})", rid)
            answers.append(text)
        elif role not in SYSTEM_ROLES:
            return reject(f"unknown role {role!r} (turn {turn_no})", rid)
    if not answers:
        return reject("no answer", rid)
    images = obj.get("image")
    if images is None:
        images = obj.get("images")
    if images is None:
        images = []
    elif isinstance(images, str):
        images = [images]
    elif not (isinstance(images, list) and all(isinstance(i, str) for i in images)):
        return reject("image field is not a path or a list of paths", rid)
    instruction = user[0].replace("<image>", "").strip() if user else ""
    return Parsed(str(rid), instruction, "\n\n".join(answers), images)


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
            texts.append(part.get("text") or "")
        elif kind in ("image_url", "image", "input_image"):
            ref = part.get("image_url", part.get("image", part.get("path", part.get("url"))))
            if isinstance(ref, dict):
                ref = ref.get("url")
            if not isinstance(ref, str) or not ref:
                return "image part names no file"
            if ref.startswith(("http://", "https://", "data:")):
                return "image part is not a local file (only local paths are supported)"
            images.append(ref.removeprefix("file://"))
        else:
            return f"unknown content part type {kind!r}"
    return texts, images


def parse_messages(obj: Any, line: int) -> Parsed:
    """OpenAI-style chat: {"messages": [{"role", "content": str | [parts]}]}; image parts name local files."""
    if not isinstance(obj, dict):
        return reject("record is not a JSON object")
    rid = obj.get("id", f"line-{line}")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return reject("no conversation", rid)
    user, answers, images = [], [], []
    for turn_no, msg in enumerate(msgs, 1):
        if not isinstance(msg, dict):
            return reject(f"message {turn_no} is not an object", rid)
        role = msg.get("role")
        if role not in MESSAGE_ROLES:
            return reject(f"unknown role {role!r} (message {turn_no})", rid)
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
    return Parsed(str(rid), user[0].strip() if user else "", "\n\n".join(answers), images)


def parse_cc_sbu(obj: Any, line: int) -> Parsed:
    """MiniGPT-4 cc_sbu_align annotation: {"image_id", "caption"}; the image is `{image_id}.jpg`."""
    if not isinstance(obj, dict):
        return reject("annotation is not a JSON object")
    image_id = obj.get("image_id")
    if image_id is None or isinstance(image_id, (dict, list)):
        return reject("annotation has no image_id")
    caption = obj.get("caption")
    if caption is None:
        return reject("no answer", image_id)
    if not isinstance(caption, str) or not caption.strip():
        return reject("empty answer", image_id)
    return Parsed(str(image_id), CC_SBU_INSTRUCTION, caption, [f"{image_id}.jpg"])


PARSERS = {"llava": parse_conversations, "sharegpt": parse_conversations,
           "messages": parse_messages, "cc_sbu": parse_cc_sbu}
