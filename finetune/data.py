"""Instruction records -> chat messages -> token ids with answer-only labels, and the padding collator.

Records come from `selector.core.records.read_records` (LLaVA, ShareGPT, messages or cc_sbu_align), so bad records are
rejected there with a reason. Records that parse but cannot be encoded (e.g. longer than `max_length`, or more
images than image tokens) are rejected here, again with a reason, never with a crash.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from selector.core.records import read_records

log = logging.getLogger(__name__)
IGNORE = -100  # the label value torch's cross-entropy skips
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant"}
SYSTEM_ROLES = {"system", "developer"}


@dataclass
class Example:
    """One encoded record: ids, labels (IGNORE on everything but answer tokens), images, and its reference answer."""

    id: str
    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None
    prompt_ids: torch.Tensor  # the conversation up to the last answer, with the generation prompt
    prompt_pixel_values: torch.Tensor | None
    answer: str  # the last assistant turn, the reference for generation accuracy


@dataclass
class EncodedSet:
    examples: list[Example]
    rejected: list[dict] = field(default_factory=list)  # {"line", "id", "reason"} from reading and from encoding
    path: str = ""

    def __len__(self) -> int:
        return len(self.examples)


def _turns_of_raw(raw: str, schema: str, instruction: str, answer: str) -> list[tuple[str, str]]:
    """(role, text) turns of one record, with role in {system, user, assistant} and <image> markers removed."""
    if schema in ("llava", "sharegpt"):
        obj = json.loads(raw)
        turns = []
        for turn in obj["conversations"]:
            role = turn.get("from", turn.get("role"))
            text = turn.get("value", turn.get("content")) or ""
            role = "user" if role in USER_ROLES else "assistant" if role in ASSISTANT_ROLES else "system"
            turns.append((role, text.replace("<image>", "").strip()))
        return turns
    if schema == "messages":
        obj = json.loads(raw)
        turns = []
        for msg in obj["messages"]:
            content = msg["content"]
            if isinstance(content, list):
                content = "\n".join(p.get("text") or "" for p in content if p.get("type") == "text")
            role = msg["role"] if msg["role"] in ("user", "assistant") else "system"
            turns.append((role, content.strip()))
        return turns
    return [("user", instruction), ("assistant", answer)]


def to_messages(turns: list[tuple[str, str]], n_images: int) -> list[dict]:
    """Chat-template messages; a record's images go at the start of its first user turn (LLaVA's convention)."""
    messages, placed = [], False
    for role, text in turns:
        parts: list[dict] = []
        if role == "user" and not placed:
            parts += [{"type": "image"} for _ in range(n_images)]
            placed = True
        parts.append({"type": "text", "text": text})
        messages.append({"role": role, "content": parts})
    return messages


def _load_images(root: Path | None, names: list[str]):
    from PIL import Image

    from selector.core.embedded import image_file

    images = []
    for name in names:
        with Image.open(image_file(root or Path("."), name)) as im:
            images.append(im.convert("RGB"))
    return images


class Encoder:
    """Renders messages through the processor's chat template and masks labels to the assistant turns.

    The answer span of each assistant turn is found by rendering the conversation up to that turn with the generation
    prompt (its token count is where the answer starts) and up to the end of that turn (where it ends). This works for
    any chat template without a `{% generation %}` block; a template whose prefix does not tokenise to a prefix of the
    full conversation is detected and the record rejected with a reason.
    """

    def __init__(self, processor, max_length: int = 512):
        self.processor = processor
        self.max_length = max_length

    def _ids(self, messages: list[dict], images, generation_prompt: bool):
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        # Only the image count matters for the prefix lengths, but the processor needs the images to expand tokens.
        enc = self.processor(text=text, images=images or None, return_tensors="pt")
        return enc["input_ids"][0], enc.get("pixel_values")

    def encode(self, rid: str, turns: list[tuple[str, str]], images) -> Example | str:
        """An Example, or the reason the record cannot be used."""
        if not any(role == "assistant" for role, _ in turns):
            return "no assistant turn"
        last = max(i for i, (role, _) in enumerate(turns) if role == "assistant")
        turns = turns[: last + 1]
        messages = to_messages(turns, len(images))
        ids, pixels = self._ids(messages, images, False)
        if len(ids) > self.max_length:
            return f"{len(ids)} tokens, longer than max_length {self.max_length}"
        labels = torch.full_like(ids, IGNORE)
        prompt_ids = prompt_pixels = None
        for i, (role, _) in enumerate(turns):
            if role != "assistant":
                continue
            start_ids, start_pixels = self._ids(messages[:i], images if _has_image(messages[:i]) else [], True)
            end_ids = ids if i == last else \
                self._ids(messages[: i + 1], images if _has_image(messages[: i + 1]) else [], False)[0]
            a, b = len(start_ids), len(end_ids)
            if not (torch.equal(start_ids, ids[:a]) and torch.equal(end_ids, ids[:b])) or b <= a:
                return "chat template does not render turn by turn (prefix tokens differ); cannot mask the prompt"
            labels[a:b] = ids[a:b]
            if i == last:
                prompt_ids, prompt_pixels = start_ids, start_pixels
        return Example(rid, ids, labels, pixels, prompt_ids, prompt_pixels, turns[last][1])


def _has_image(messages: list[dict]) -> bool:
    return any(isinstance(p, dict) and p.get("type") == "image" for m in messages for p in m["content"])


def _record_texts(records) -> list[tuple[int, str, str, str, str, list[str]]]:
    """(line, id, raw JSON, instruction, answer, images) of each valid record, in file order.

    The record's own JSON is needed for multi-turn conversations; the reader keeps it as text (`raw`) or as a byte
    range (`offset`, `length`) into the source file, depending on the container.
    """
    import pyarrow.compute as pc

    table = records.table
    table = table.filter(pc.is_null(table.column("reason")))
    cols = {name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
            for name in ("line", "id", "raw", "offset", "length", "instruction", "answer", "images")}
    raws = cols["raw"]
    if any(r is None for r in raws):
        with open(records.byte_path, "rb") as f:
            for i, (raw, off, length) in enumerate(zip(raws, cols["offset"], cols["length"])):
                if raw is None and off is not None:
                    f.seek(off)
                    raws[i] = f.read(length).decode("utf-8")
    return list(zip(cols["line"], cols["id"], raws, cols["instruction"], cols["answer"], cols["images"]))


def encode_records(path: str | Path, processor, *, images: str | Path | None = None, max_length: int = 512,
                   limit: int | None = None, dedup: bool = True, progress: bool = False) -> EncodedSet:
    """Read an instruction file and encode its valid records; rejected ones are returned with reasons.

    `dedup` rejects exact repeats (right for training data; evaluation sets keep repeated questions).
    """
    from tqdm.auto import tqdm

    records = read_records(path, images=images, workers=1, dedup=dedup)
    rejected = records.rejected()
    rows = _record_texts(records)
    if limit is not None:
        rows = rows[:limit]
    encoder = Encoder(processor, max_length)
    schema = records.layout.schema
    examples = []
    for line, rid, raw, instruction, answer, names in tqdm(rows, desc=f"encode {Path(path).name}",
                                                            disable=not progress, leave=False):
        try:
            turns = _turns_of_raw(raw, schema, instruction, answer)
            result = encoder.encode(rid, turns, _load_images(records.images_root, names))
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:  # faults of one record
            result = f"cannot encode: {type(exc).__name__}: {exc}"
        if isinstance(result, str):
            rejected.append({"line": line, "id": rid, "reason": result})
        else:
            examples.append(result)
    if rejected:
        log.warning("%s: %d of %d records rejected (first: line %s, %s)", path, len(rejected),
                    len(records), rejected[0]["line"], rejected[0]["reason"])
    return EncodedSet(examples, rejected, str(path))


def collate(examples: list[Example], pad_id: int, *, prompt_only: bool = False, padding_side: str = "right") -> dict:
    """Pad a batch: ids with `pad_id`, labels with IGNORE, attention mask 0 on padding; images concatenated in order.

    `prompt_only` builds generation inputs (prompt ids, left padding is what decoder-only generation needs).
    """
    seqs = [ex.prompt_ids if prompt_only else ex.input_ids for ex in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    for row, (ex, seq) in enumerate(zip(examples, seqs)):
        sl = slice(width - len(seq), width) if padding_side == "left" else slice(0, len(seq))
        ids[row, sl] = seq
        mask[row, sl] = 1
        if not prompt_only:
            labels[row, sl] = ex.labels
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    if not prompt_only:
        batch["labels"] = labels
    pixels = [ex.prompt_pixel_values if prompt_only else ex.pixel_values for ex in examples]
    pixels = [p for p in pixels if p is not None]
    if pixels:
        batch["pixel_values"] = torch.cat(pixels, dim=0)
    return batch
