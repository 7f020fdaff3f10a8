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
    """One encoded record: ids, labels (IGNORE on everything but answer tokens), the processor's other model inputs,
    the generation prompt (the conversation up to its last answer) and the reference answer.

    `token_inputs` are the processor outputs aligned with the ids (Gemma's token_type_ids, Qwen's
    mm_token_type_ids); `image_inputs` the per-image ones (pixel_values, image_sizes, image_grid_thw,
    pixel_attention_mask, ...), shared by the prompt since a record's images sit in its first user turn."""

    id: str
    input_ids: torch.Tensor
    labels: torch.Tensor
    image_inputs: dict
    token_inputs: dict
    prompt_ids: torch.Tensor
    prompt_token_inputs: dict
    answer: str  # the last assistant turn, the reference for generation accuracy
    truncated: bool = False  # cut to max_length (the labels keep the answer tokens inside it)


@dataclass
class EncodedSet:
    examples: list[Example]
    rejected: list[dict] = field(default_factory=list)  # {"line", "id", "reason"} from reading and from encoding
    path: str = ""

    @property
    def truncated(self) -> int:
        """How many examples were cut to max_length."""
        return sum(ex.truncated for ex in self.examples)

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

    Each answer's span is found by rendering: it starts where the conversation with that answer differs from the
    same conversation with the answer left empty, and ends where the rendering up to the end of that turn ends. This
    needs no `{% generation %}` block and works when a template's generation prompt differs from its rendered
    assistant header (LLaVA-OneVision's). A template that does not render turn by turn (a prefix of the
    conversation is not a prefix of its tokens) is detected and the record rejected with a reason.

    An answer whose span holds no stop token (LLaVA-1.5's template ends turns without </s>) gets the tokenizer's
    end-of-sequence token appended, as the family was trained, so the model learns to stop. A record longer than
    `max_length` is cut there when its first answer starts inside it (counted as truncated), else rejected.
    """

    def __init__(self, processor, max_length: int = 512, stop_ids: set[int] | None = None):
        self.processor = processor
        self.max_length = max_length
        tok = processor.tokenizer
        self.eos_id = tok.eos_token_id
        self.stop_ids = set(stop_ids or ()) | ({self.eos_id} if self.eos_id is not None else set())

    def _encode(self, messages: list[dict], images, generation_prompt: bool = False) -> dict:
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        # Only the image count matters for the prefix lengths, but the processor needs the images to expand tokens.
        enc = self.processor(text=text, images=images or None, return_tensors="pt")
        return dict(enc)

    def _ids(self, messages: list[dict], images) -> torch.Tensor:
        return self._encode(messages, images if _has_image(messages) else [])["input_ids"][0]

    def encode(self, rid: str, turns: list[tuple[str, str]], images) -> Example | str:
        """An Example, or the reason the record cannot be used."""
        if not any(role == "assistant" for role, _ in turns):
            return "no assistant turn"
        last = max(i for i, (role, _) in enumerate(turns) if role == "assistant")
        turns = turns[: last + 1]
        messages = to_messages(turns, len(images))
        full = self._encode(messages, images)
        ids = full.pop("input_ids")[0]
        full.pop("attention_mask", None)
        token_inputs = {k: v[0] for k, v in full.items()
                        if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape == (1, len(ids))}
        image_inputs = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
                        for k, v in full.items() if k not in token_inputs}
        spans = []
        for i, (role, _) in enumerate(turns):
            if role != "assistant":
                continue
            empty = [*messages[:i], {"role": "assistant", "content": [{"type": "text", "text": ""}]}]
            empty_ids = self._ids(empty, images)
            end_ids = ids if i == last else self._ids(messages[: i + 1], images)
            a, b = _common_prefix(empty_ids, ids), len(end_ids)
            if not torch.equal(end_ids, ids[:b]) or b <= a:
                return "chat template does not render turn by turn (prefix tokens differ); cannot mask the prompt"
            spans.append((a, b))
        ids, token_inputs, spans = self._end_answers(ids, token_inputs, spans)
        labels = torch.full_like(ids, IGNORE)
        for a, b in spans:
            labels[a:b] = ids[a:b]
        prompt_len = spans[-1][0]
        prompt_ids = ids[:prompt_len].clone()
        prompt_token_inputs = {k: v[:prompt_len].clone() for k, v in token_inputs.items()}
        truncated = len(ids) > self.max_length
        if truncated:
            if spans[0][0] >= self.max_length:
                return (f"{len(ids)} tokens, and the first answer starts at token {spans[0][0]}, beyond max_length "
                        f"{self.max_length}")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
            token_inputs = {k: v[: self.max_length] for k, v in token_inputs.items()}
        return Example(rid, ids, labels, image_inputs, token_inputs, prompt_ids, prompt_token_inputs,
                       turns[last][1], truncated)

    def _end_answers(self, ids, token_inputs, spans):
        """Append the end-of-sequence token to every answer span without a stop token (from the last span back, so
        earlier spans keep their positions; later ones shift by the tokens inserted before them)."""
        if self.eos_id is None or not self.stop_ids:
            return ids, token_inputs, spans
        need = [k for k, (a, b) in enumerate(spans) if not self.stop_ids & set(ids[a:b].tolist())]
        if not need:
            return ids, token_inputs, spans
        for k in reversed(need):
            b = spans[k][1]
            ids = torch.cat([ids[:b], ids.new_tensor([self.eos_id]), ids[b:]])
            token_inputs = {n: torch.cat([v[:b], v.new_zeros(1), v[b:]]) for n, v in token_inputs.items()}
        shifted, added = [], 0
        for k, (a, b) in enumerate(spans):
            grow = 1 if k in need else 0
            shifted.append((a + added, b + added + grow))
            added += grow
        return ids, token_inputs, shifted


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Number of leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0]) if len(diff) else n


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
                   limit: int | None = None, dedup: bool = True, progress: bool = False,
                   stop_ids: set[int] | None = None) -> EncodedSet:
    """Read an instruction file and encode its valid records; rejected ones are returned with reasons.

    `dedup` rejects exact repeats (right for training data; evaluation sets keep repeated questions). `stop_ids` are
    the model's end-of-generation tokens (see `Encoder`; `finetune.modeling.stop_token_ids`).
    """
    from selector.core.progress import progress_bar

    records = read_records(path, images=images, workers=1, dedup=dedup)
    rejected = records.rejected()
    rows = _record_texts(records)
    if limit is not None:
        rows = rows[:limit]
    encoder = Encoder(processor, max_length, stop_ids)
    schema = records.layout.schema
    examples = []
    for line, rid, raw, instruction, answer, names in progress_bar(rows, desc=f"encode {Path(path).name}",
                                                            disable=not progress, leave=False):
        try:
            turns = _turns_of_raw(raw, schema, instruction, answer)
            result = encoder.encode(rid, turns, _load_images(records.images_root, names))
        except (ValueError, KeyError, TypeError, AttributeError, OSError, RuntimeError) as exc:  # one record's fault
            result = f"cannot encode: {type(exc).__name__}: {exc}"
        if isinstance(result, str):
            rejected.append({"line": line, "id": rid, "reason": result})
        else:
            examples.append(result)
    if rejected:
        log.warning("%s: %d of %d records rejected (first: line %s, %s)", path, len(rejected),
                    len(records), rejected[0]["line"], rejected[0]["reason"])
    encoded = EncodedSet(examples, rejected, str(path))
    if encoded.truncated:
        log.warning("%s: %d records longer than max_length %d were truncated (their answers inside it still count)",
                    path, encoded.truncated, max_length)
    return encoded


def _pad_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """`t` zero-padded at the end of every dimension but the first up to `shape` (the processors' own convention
    for image tensors of different sizes: LLaVA-OneVision's tile counts, Idefics3's images per record)."""
    if tuple(t.shape[1:]) == shape:
        return t
    out = t.new_zeros((t.shape[0], *shape))
    out[(slice(None), *(slice(0, n) for n in t.shape[1:]))] = t
    return out


def collate(examples: list[Example], pad_id: int, *, prompt_only: bool = False, padding_side: str = "right") -> dict:
    """Pad a batch: ids with `pad_id`, labels with IGNORE, attention mask 0 on padding, token-aligned inputs with 0;
    image inputs concatenated in order along their first dimension.

    `prompt_only` builds generation inputs (prompt ids, left padding is what decoder-only generation needs).
    """
    seqs = [ex.prompt_ids if prompt_only else ex.input_ids for ex in examples]
    aligned = [ex.prompt_token_inputs if prompt_only else ex.token_inputs for ex in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    token_keys = sorted({k for d in aligned for k in d})
    extra = {k: torch.zeros((len(seqs), width), dtype=next(d[k].dtype for d in aligned if k in d))
             for k in token_keys}
    for row, (ex, seq, tok) in enumerate(zip(examples, seqs, aligned)):
        sl = slice(width - len(seq), width) if padding_side == "left" else slice(0, len(seq))
        ids[row, sl] = seq
        mask[row, sl] = 1
        if not prompt_only:
            labels[row, sl] = ex.labels
        for k, v in tok.items():
            extra[k][row, sl] = v
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, **extra}
    if not prompt_only:
        batch["labels"] = labels
    for key in sorted({k for ex in examples for k in ex.image_inputs}):
        parts = [ex.image_inputs[key] for ex in examples if key in ex.image_inputs]
        shape = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].dim()))
        batch[key] = torch.cat([_pad_to(p, shape) for p in parts], dim=0)
    return batch
