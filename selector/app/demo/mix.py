"""DigitsVQA-Mix: a task mixture built from the same real digits as DigitsVQA, with a skewed training pool.

Tasks: `identify` the digit, `parity` (odd or even), `compare` two images (which shows the larger digit; two images
per record) and `sum` of the digits in two images. The train pool is skewed toward identify (default 70/10/10/10);
pretrain, val and test are balanced (pretrain is clean, so the stage-1 model has seen every task and the two-image
input). val and test ask for one-word answers ("7", "odd", "first", "12"), as DigitsVQA's do.

Corruptions of the train pool (share `noise`): DigitsVQA's (wrong digit, truncated, off-topic answer, another
image's answer, exact duplicate) plus ones a CLIP score cannot see because the digit named in the answer is right:
wrong parity, wrong comparison, wrong sum, and near-duplicate rephrasings (a clean record again with a reworded
question: redundant, counted as not clean as duplicates are). `truth.jsonl` records each train record's task and
corruption; every record also carries its `task` (a field a real task mixture has). Splits draw on disjoint source
images; everything follows from the seed.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from selector.app.demo.data import (IDENTIFY_A, IDENTIFY_Q, OFF_TOPIC, PARITY_Q, WORDS, insert_copies,
                                    truncated, write_split_images, write_splits)
from selector.core.errors import SettingsError
from selector.core.io import atomic_write

TASKS = ("identify", "parity", "compare", "sum")
COMPARE_Q = ["Which of the two images shows the larger digit?",
             "Look at both pictures: which one has the bigger number?",
             "Compare the two handwritten digits. Which image shows the larger one?"]
SUM_Q = ["What is the sum of the digits in the two images?", "Add the two handwritten numbers. What do you get?",
         "What do the digits in these two images add up to?"]
SHORT_Q = {"identify": "What digit is shown in the image? Answer with a single digit.",
           "parity": "Is the digit in the image odd or even? Answer with one word.",
           "compare": "Which image shows the larger digit, the first or the second? Answer with one word.",
           "sum": "What is the sum of the two digits? Answer with a number."}
REPHRASE = {"identify": ["Could you tell me which digit appears in this picture?",
                         "Please name the handwritten digit shown here."],
            "parity": ["Would you say the number in this picture is odd or even?",
                       "Please tell me if the shown digit is even or odd."],
            "compare": ["Between these two pictures, which digit is larger?",
                        "Please say which image holds the bigger digit."],
            "sum": ["Please add up the digits in the two pictures.", "If you add these two digits, what is the total?"]}
CORRUPTIONS = {"identify": ("wrong_digit", "truncated", "off_topic", "other_image"),
               "parity": ("wrong_parity", "truncated", "off_topic", "other_image"),
               "compare": ("wrong_comparison", "truncated", "off_topic"),
               "sum": ("wrong_sum", "truncated", "off_topic")}
ALL_CORRUPTIONS = ("wrong_digit", "wrong_parity", "wrong_comparison", "wrong_sum", "truncated", "off_topic",
                   "other_image", "duplicate", "near_duplicate")


@dataclass(frozen=True)
class MixConfig:
    """DigitsVQA-Mix settings. `train_shares` is the pool's task mix (identify, parity, compare, sum); the other
    splits are balanced. Of the `noise` share, a quarter is added copies (half exact, half reworded)."""

    n_pretrain: int = 600
    n_train: int = 1200
    n_val: int = 200
    n_test: int = 400
    noise: float = 0.4
    train_shares: tuple[float, float, float, float] = (0.7, 0.1, 0.1, 0.1)
    seed: int = 0
    image_size: int = 32

    def __post_init__(self):
        if min(self.n_pretrain, self.n_train, self.n_val, self.n_test) < len(TASKS):
            raise SettingsError(f"every split needs at least {len(TASKS)} records (one per task)")
        if not 0.0 <= self.noise <= 1.0:
            raise SettingsError(f"noise must be in [0, 1], got {self.noise}")
        if len(self.train_shares) != len(TASKS) or min(self.train_shares) < 0 or sum(self.train_shares) <= 0:
            raise SettingsError(f"train_shares needs {len(TASKS)} non-negative shares, got {self.train_shares}")
        if not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed must be in [0, 2**32), got {self.seed}")


def task_counts(n: int, shares) -> dict[str, int]:
    """Records per task for `n` records split by `shares` (largest remainders, so the counts sum to n)."""
    w = np.asarray(shares, dtype=float) / float(np.sum(shares))
    raw = w * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(TASKS, counts.tolist()))


def _answer(task: str, digits: list[int], short: bool, rng) -> str:
    a = digits[0]
    if task == "identify":
        return str(a) if short else str(rng.choice(IDENTIFY_A)).format(d=a, w=WORDS[a])
    if task == "parity":
        word = "even" if a % 2 == 0 else "odd"
        return word if short else f"The digit is {a}, which is {word}."
    b = digits[1]
    if task == "compare":
        which = "first" if a > b else "second"
        return which if short else f"The {which} image shows the larger digit: {max(a, b)} is more than {min(a, b)}."
    return str(a + b) if short else f"The digits are {a} and {b}, so the sum is {a + b}."


def _question(task: str, short: bool, rng) -> str:
    if short:
        return SHORT_Q[task]
    return str(rng.choice({"identify": IDENTIFY_Q, "parity": PARITY_Q, "compare": COMPARE_Q, "sum": SUM_Q}[task]))


def _record(rid: str, task: str, srcs: list[int], question: str, answer: str) -> dict:
    images = [f"images/{s:04d}.png" for s in srcs]
    marks = "".join("<image>\n" for _ in images)
    return {"id": rid, "task": task, "image": images[0] if len(images) == 1 else images,
            "conversations": [{"from": "human", "value": f"{marks}{question}"}, {"from": "gpt", "value": answer}]}


def _draw(pool: np.ndarray, labels, task: str, rng) -> list[int]:
    """Source images for one record: one, or two with different digits (so a comparison has an answer)."""
    a = int(rng.choice(pool))
    if task in ("identify", "parity"):
        return [a]
    b = int(rng.choice([p for p in pool if labels[p] != labels[a]]))
    return [a, b]


def _split(name: str, counts: dict[str, int], pool, labels, rng, short: bool | float) -> list[tuple[dict, list[int]]]:
    """Clean records with `counts` per task, shuffled; `short` True (all one-word answers) or a share of them."""
    tasks = [t for t, c in counts.items() for _ in range(c)]
    tasks = [tasks[i] for i in rng.permutation(len(tasks))]
    out = []
    for i, task in enumerate(tasks):
        srcs = _draw(pool, labels, task, rng)
        is_short = bool(short) if isinstance(short, bool) else bool(rng.random() < short)
        digits = [int(labels[s]) for s in srcs]
        out.append((_record(f"{name}-{i:05d}", task, srcs, _question(task, is_short, rng),
                            _answer(task, digits, is_short, rng)), srcs))
    return out


def _corrupt(rec: dict, srcs: list[int], kind: str, labels, pool, rng) -> dict:
    rec = json.loads(json.dumps(rec))
    task = rec["task"]
    answer = rec["conversations"][1]["value"]
    short = answer.split() == [answer]
    digits = [int(labels[s]) for s in srcs]
    if kind == "wrong_digit":
        digits[0] = int(rng.choice([d for d in range(10) if d != digits[0]]))
        answer = _answer(task, digits, short, rng)
    elif kind == "wrong_parity":  # the right digit, the wrong parity word
        right = "even" if digits[0] % 2 == 0 else "odd"
        wrong = "odd" if right == "even" else "even"
        answer = wrong if short else f"The digit is {digits[0]}, which is {wrong}."
    elif kind == "wrong_comparison":  # the right digits, the wrong image named
        a, b = digits
        which = "second" if a > b else "first"
        answer = which if short else f"The {which} image shows the larger digit: {max(a, b)} is more than {min(a, b)}."
    elif kind == "wrong_sum":
        a, b = digits
        wrong = a + b + int(rng.choice([-3, -2, -1, 1, 2, 3]))
        answer = str(wrong) if short else f"The digits are {a} and {b}, so the sum is {wrong}."
    elif kind == "truncated":
        answer = truncated(answer, rng)
    elif kind == "off_topic":
        answer = str(rng.choice(OFF_TOPIC))
    elif kind == "other_image":
        other = int(rng.choice([p for p in pool if labels[p] != digits[0]]))
        answer = _answer(task, [int(labels[other])], short, rng)
    else:
        raise ValueError(kind)
    rec["conversations"][1]["value"] = answer
    return rec


def build_digits_mix(out: str | Path, config: MixConfig = MixConfig()) -> dict:
    """Write DigitsVQA-Mix under `out` (images/, pretrain/train/val/test.jsonl, truth.jsonl, meta.json)."""
    out = Path(out)
    rng = np.random.default_rng(config.seed)
    counts = [config.n_pretrain, config.n_train, config.n_val, config.n_test]
    _, labels, pools = write_split_images(out, config.image_size, counts, rng)
    balanced = [1.0] * len(TASKS)
    pretrain = _split("pretrain", task_counts(config.n_pretrain, balanced), pools[0], labels, rng, 0.3)
    val = _split("val", task_counts(config.n_val, balanced), pools[2], labels, rng, True)
    test = _split("test", task_counts(config.n_test, balanced), pools[3], labels, rng, True)

    n_noisy = int(round(config.noise * config.n_train))
    n_copies = n_noisy // 4
    n_near = n_copies // 2
    n_dup = n_copies - n_near
    base = _split("train", task_counts(config.n_train - n_copies, config.train_shares), pools[1], labels, rng, 0.3)
    records = [rec for rec, _ in base]
    truth = {rec["id"]: None for rec in records}
    for pos in rng.choice(len(base), size=n_noisy - n_copies, replace=False):
        rec, srcs = base[pos]
        kind = str(rng.choice(CORRUPTIONS[rec["task"]]))
        records[pos] = _corrupt(rec, srcs, kind, labels, pools[1], rng)
        truth[rec["id"]] = kind

    def rephrase(k: int, copy: dict) -> str:
        if k < n_dup:
            return "duplicate"
        marks = "".join("<image>\n" for _ in (copy["image"] if isinstance(copy["image"], list) else [0]))
        copy["conversations"][0]["value"] = marks + str(rng.choice(REPHRASE[copy["task"]]))
        return "near_duplicate"

    insert_copies(records, truth, n_copies, rng, rephrase)

    write_splits(out, pretrain, records, val, test,
                 [{"id": r["id"], "task": r["task"], "clean": truth[r["id"]] is None, "corruption": truth[r["id"]]}
                  for r in records])
    meta = {"config": asdict(config), "kind": "digitsvqa-mix",
            "counts": {"pretrain": len(pretrain), "train": len(records), "val": len(val), "test": len(test)},
            "train_tasks": {t: sum(r["task"] == t for r in records) for t in TASKS},
            "corruptions": {k: sum(1 for v in truth.values() if v == k) for k in ALL_CORRUPTIONS},
            "images": {name: len(p) for name, p in zip(["pretrain", "train", "val", "test"], pools)}}
    atomic_write(out / "meta.json", [json.dumps(meta, indent=2).encode()])
    return meta


__all__ = ["ALL_CORRUPTIONS", "MixConfig", "TASKS", "build_digits_mix", "task_counts"]
