"""DigitsVQA: a small, real multimodal instruction set built from sklearn's 1,797 handwritten digits.

Four splits draw on disjoint source images. Only `train.jsonl` is corrupted (share `noise`), with the kinds of
noise a scraped instruction set carries: wrong digit, truncated answer, off-topic answer, another image's answer,
and duplicated samples. `truth.jsonl` records which train records are clean; no metric may read it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from selector.core.errors import SettingsError
from selector.core.io import atomic_write

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CORRUPTIONS = ("wrong_digit", "truncated", "off_topic", "other_image", "duplicate")

IDENTIFY_Q = ["What digit is shown in this image?", "Which number is written here?",
              "Identify the handwritten digit in the picture.", "What number does this image show?",
              "Read the digit in this image."]
IDENTIFY_A = ["The digit is {d}.", "This is a handwritten {d}.", "It shows the number {w} ({d}).",
              "The image shows the digit {d}.", "That is a {w}, the digit {d}."]
DESCRIBE_Q = ["Describe this image in detail.", "Give a detailed description of the picture.",
              "What can you see in this image? Be thorough."]
PARITY_Q = ["Is the digit in this image even or odd?", "Tell me whether the number shown is odd or even."]
PLUS_Q = ["What do you get if you add one to the digit in the image?", "Take the number shown and add one. What is it?"]
SHORT_Q = ["What digit is shown in the image? Answer with a single digit.",
           "Which digit is this? Reply with one digit only.",
           "Answer with a single digit: what number is written here?"]
OFF_TOPIC = [
    "Preheat the oven to 180 degrees, whisk the eggs with sugar, and bake the sponge for twenty-five minutes.",
    "The stock market closed higher today as technology shares rallied after strong quarterly earnings.",
    "To reset your router, hold the power button for ten seconds and wait for the lights to blink.",
    "Tomorrow will be cloudy in the morning with light rain expected over the coastal areas by evening.",
    "The midfielder scored twice in the second half, sealing a comfortable victory for the home team.",
    "A good night's sleep helps memory, so keep a regular schedule and avoid screens before bed.",
    "Python lists are mutable sequences, while tuples cannot be changed after they are created.",
    "The museum is open from nine to five on weekdays, and entry is free on the first Sunday.",
    "Water the tomato plants early in the morning and keep the soil moist but not soggy.",
    "The train to the airport leaves every fifteen minutes from platform four.",
]


@dataclass(frozen=True)
class DigitsVQAConfig:
    n_pretrain: int = 600
    n_train: int = 1200
    n_val: int = 200
    n_test: int = 400
    noise: float = 0.4
    seed: int = 0
    image_size: int = 32

    def __post_init__(self):
        counts = {"n_pretrain": self.n_pretrain, "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test}
        bad = [f"{k} {v}" for k, v in counts.items() if v < 1]
        if bad:
            raise SettingsError(f"every split needs at least one record, got {', '.join(bad)}")
        if not 0.0 <= self.noise <= 1.0:
            raise SettingsError(f"noise must be in [0, 1], got {self.noise}")
        if not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.image_size < 8:
            raise SettingsError(f"image_size must be >= 8 (the digits are 8x8), got {self.image_size}")


def load_digit_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 sklearn digits as uint8 (n, size, size) images, light strokes on dark, and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in small])
    return big, digits.target.astype(np.int64)


def _image_facts(img: np.ndarray) -> tuple[str, str]:
    """Two checkable facts about a digit image: stroke weight and where the ink sits."""
    ink = img.astype(np.float64) / 255.0
    coverage = ink.mean()
    weight = "thick, bold strokes" if coverage > 0.30 else "medium strokes" if coverage > 0.22 else "thin strokes"
    cols = ink.sum(axis=0)
    centre = (cols * np.arange(len(cols))).sum() / max(cols.sum(), 1e-9) / (len(cols) - 1)
    lean = "leans to the left" if centre < 0.46 else "leans to the right" if centre > 0.54 else "is centred"
    return weight, lean


def _clean_pair(kind: str, digit: int, img: np.ndarray, rng: np.random.Generator) -> tuple[str, str]:
    w = WORDS[digit]
    if kind == "identify":
        return rng.choice(IDENTIFY_Q), rng.choice(IDENTIFY_A).format(d=digit, w=w)
    if kind == "describe":
        weight, lean = _image_facts(img)
        parity = "even" if digit % 2 == 0 else "odd"
        return rng.choice(DESCRIBE_Q), (
            f"The image shows a handwritten digit {digit} ({w}) in light ink on a dark background. "
            f"It is drawn with {weight} and {lean} within the frame. The number {w} is {parity}.")
    if kind == "parity":
        return rng.choice(PARITY_Q), f"The digit is {digit}, which is {'even' if digit % 2 == 0 else 'odd'}."
    if kind == "plus":
        return rng.choice(PLUS_Q), f"The digit shown is {digit}, so adding one gives {digit + 1}."
    if kind == "short":
        return rng.choice(SHORT_Q), str(digit)
    raise ValueError(kind)


def _record(rid: str, image: str, instruction: str, answer: str) -> dict:
    return {"id": rid, "image": image,
            "conversations": [{"from": "human", "value": f"<image>\n{instruction}"},
                              {"from": "gpt", "value": answer}]}


def _split_images(n_images: int, counts: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint image pools, sized in proportion to each split's record count (at least one image each)."""
    order = rng.permutation(n_images)
    total = sum(counts)
    sizes = [max(1, int(n_images * c / total)) for c in counts]
    sizes[-1] = n_images - sum(sizes[:-1])
    bounds = np.cumsum([0] + sizes)
    return [order[a:b] for a, b in zip(bounds, bounds[1:])]


def write_split_images(out: Path, image_size: int, counts: list[int], rng: np.random.Generator):
    """The digits, split into disjoint image pools per split (sized by `counts`) and written to out/images/;
    returns (images, labels, pools)."""
    from PIL import Image

    images, labels = load_digit_images(image_size)
    pools = _split_images(len(labels), counts, rng)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for pool in pools:
        for src in pool:
            path = out / "images" / f"{src:04d}.png"
            if not path.exists():
                Image.fromarray(images[src]).convert("RGB").save(path)
    return images, labels, pools


KINDS = ("identify", "describe", "parity", "plus", "short")
KIND_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.1, 0.2])


def _clean_split(name: str, n: int, pool: np.ndarray, images, labels, rng, short_only: bool) -> list[tuple[dict, int]]:
    picks = np.concatenate([rng.permutation(pool) for _ in range(n // len(pool) + 1)])[:n]
    out = []
    for i, src in enumerate(picks):
        kind = "short" if short_only else rng.choice(KINDS, p=KIND_WEIGHTS)
        q, a = _clean_pair(kind, int(labels[src]), images[src], rng)
        out.append((_record(f"{name}-{i:05d}", f"images/{src:04d}.png", q, a), int(src)))
    return out


def truncated(answer: str, rng: np.random.Generator) -> str:
    """An answer cut after its first one or two words ("Th" for a one-word answer): the `truncated` corruption."""
    words = answer.split()
    return " ".join(words[: int(rng.integers(1, 3))]) if len(words) > 1 else "Th"


def _corrupt(rec: dict, kind: str, src: int, labels, images, rng, pool: np.ndarray) -> dict:
    rec = json.loads(json.dumps(rec))
    answer = rec["conversations"][1]["value"]
    digit = int(labels[src])
    if kind == "wrong_digit":
        wrong = int(rng.choice([d for d in range(10) if d != digit]))
        q = rec["conversations"][0]["value"].replace("<image>\n", "")
        kinds = {"identify": IDENTIFY_Q, "describe": DESCRIBE_Q, "parity": PARITY_Q, "plus": PLUS_Q, "short": SHORT_Q}
        kind_of = next(k for k, qs in kinds.items() if q in qs)
        # Same template, wrong digit: describes facts of this image but names another number.
        _, answer = _clean_pair(kind_of, wrong, images[src], rng)
    elif kind == "truncated":
        answer = truncated(answer, rng)
    elif kind == "off_topic":
        answer = str(rng.choice(OFF_TOPIC))
    elif kind == "other_image":
        other = int(rng.choice([p for p in pool if labels[p] != digit]))
        _, answer = _clean_pair("describe", int(labels[other]), images[other], rng)
    rec["conversations"][1]["value"] = answer
    return rec


def insert_copies(records: list[dict], truth: dict[str, str | None], n: int, rng: np.random.Generator,
                  edit: Callable[[int, dict], str] | None = None) -> None:
    """Insert `n` copies of clean records (`truth[id] is None`), each at a random place after its original, ids
    `train-<len(records) + k>`; `edit(k, copy)` may change copy k and returns its corruption kind (default
    "duplicate"). Edits `records` and `truth` in place; shared by DigitsVQA and DigitsVQA-Mix (same draws, in the
    same order: source, then the edit's, then the place)."""
    first = len(records)
    clean_pos = [i for i, r in enumerate(records) if truth[r["id"]] is None]
    for k in range(n):
        src_pos = int(rng.choice(clean_pos))
        copy = json.loads(json.dumps(records[src_pos]))
        copy["id"] = f"train-{first + k:05d}"
        kind = edit(k, copy) if edit is not None else "duplicate"
        at = int(rng.integers(src_pos + 1, len(records) + 1))  # always after its original
        records.insert(at, copy)
        clean_pos = [i if i < at else i + 1 for i in clean_pos]
        truth[copy["id"]] = kind


def write_splits(out: Path, pretrain: list[tuple[dict, object]], train: list[dict], val: list[tuple[dict, object]],
                 test: list[tuple[dict, object]], truth: list[dict]) -> None:
    """Write the four splits (pretrain/val/test as (record, source) pairs) and truth.jsonl as JSONL under `out`."""
    def dump(name: str, rows: list[dict]):
        atomic_write(out / name, (json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))

    dump("pretrain.jsonl", [r for r, _ in pretrain])
    dump("train.jsonl", train)
    dump("val.jsonl", [r for r, _ in val])
    dump("test.jsonl", [r for r, _ in test])
    dump("truth.jsonl", truth)


def build_digits_vqa(out: str | Path, config: DigitsVQAConfig = DigitsVQAConfig()) -> dict:
    """Write DigitsVQA under `out` (images/, pretrain/train/val/test.jsonl, truth.jsonl, meta.json); returns counts."""
    out = Path(out)
    rng = np.random.default_rng(config.seed)
    counts = [config.n_pretrain, config.n_train, config.n_val, config.n_test]
    images, labels, pools = write_split_images(out, config.image_size, counts, rng)

    pretrain = _clean_split("pretrain", config.n_pretrain, pools[0], images, labels, rng, short_only=False)
    val = _clean_split("val", config.n_val, pools[2], images, labels, rng, short_only=True)
    test = _clean_split("test", config.n_test, pools[3], images, labels, rng, short_only=True)

    # train: clean records, a `noise` share of them corrupted; duplicates copy an earlier clean record.
    n_noisy = int(round(config.noise * config.n_train))
    n_dup = n_noisy // len(CORRUPTIONS)
    base = _clean_split("train", config.n_train - n_dup, pools[1], images, labels, rng, short_only=False)
    kinds = [CORRUPTIONS[i % (len(CORRUPTIONS) - 1)] for i in range(n_noisy - n_dup)]
    noisy_pos = rng.choice(len(base), size=len(kinds), replace=False)
    truth = {rec["id"]: None for rec, _ in base}
    records = [rec for rec, _ in base]
    for pos, kind in zip(noisy_pos, kinds):
        rec, src = base[pos]
        records[pos] = _corrupt(rec, kind, src, labels, images, rng, pools[1])
        truth[rec["id"]] = kind
    insert_copies(records, truth, n_dup, rng)

    write_splits(out, pretrain, records, val, test,
                 [{"id": r["id"], "clean": truth[r["id"]] is None, "corruption": truth[r["id"]]} for r in records])
    meta = {"config": asdict(config), "counts": {"pretrain": len(pretrain), "train": len(records), "val": len(val),
                                                 "test": len(test)},
            "corruptions": {k: sum(1 for v in truth.values() if v == k) for k in CORRUPTIONS},
            "images": {name: len(p) for name, p in zip(["pretrain", "train", "val", "test"], pools)}}
    atomic_write(out / "meta.json", [json.dumps(meta, indent=2).encode()])
    return meta


def load_truth(path: str | Path) -> dict[str, dict]:
    with open(path) as f:
        return {row["id"]: row for row in map(json.loads, f)}
