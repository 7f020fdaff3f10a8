"""DigitsVQA: disjoint splits, a labelled corruption mix in train only, real digit content."""
import json
from collections import Counter

from selector.app.demo.data import CORRUPTIONS, WORDS
from selector.core.records import read_records


def _rows(path):
    return [json.loads(l) for l in open(path)]


def test_splits_are_disjoint_and_sized(digits_vqa):
    images = {}
    for split, n in [("pretrain", 600), ("train", 1200), ("val", 200), ("test", 400)]:
        rows = _rows(digits_vqa / f"{split}.jsonl")
        assert len(rows) == n
        images[split] = {r["image"] for r in rows}
    splits = list(images)
    for a in splits:
        for b in splits:
            if a < b:
                assert not images[a] & images[b], (a, b)
    assert sum(len(v) for v in images.values()) <= 1797


def test_truth_covers_train_with_every_corruption(digits_vqa):
    truth = _rows(digits_vqa / "truth.jsonl")
    train_ids = [r["id"] for r in _rows(digits_vqa / "train.jsonl")]
    assert [t["id"] for t in truth] == train_ids
    kinds = Counter(t["corruption"] for t in truth if not t["clean"])
    assert set(kinds) == set(CORRUPTIONS)
    assert abs(sum(kinds.values()) / len(truth) - 0.4) < 0.01
    assert all((t["corruption"] is None) == t["clean"] for t in truth)


def test_clean_answers_name_the_right_digit_and_corruptions_do_not(digits_vqa):
    from sklearn.datasets import load_digits

    labels = load_digits().target
    truth = {t["id"]: t for t in _rows(digits_vqa / "truth.jsonl")}
    for row in _rows(digits_vqa / "train.jsonl"):
        digit = int(labels[int(row["image"].split("/")[1][:4])])
        answer = row["conversations"][1]["value"]
        kind = truth[row["id"]]["corruption"]
        if kind is None or kind == "duplicate":
            assert str(digit) in answer or WORDS[digit] in answer
        elif kind == "wrong_digit":
            assert str(digit) not in answer.replace(str(digit + 1), "") or WORDS[digit] not in answer
    for row in _rows(digits_vqa / "test.jsonl"):
        digit = int(labels[int(row["image"].split("/")[1][:4])])
        assert row["conversations"][1]["value"] == str(digit)


def test_every_record_reads_and_duplicates_are_caught(digits_vqa):
    rs = read_records(digits_vqa / "train.jsonl")
    truth = {t["id"]: t for t in _rows(digits_vqa / "truth.jsonl")}
    rejected = rs.rejected()
    assert all("duplicate content" in r["reason"] for r in rejected)
    dup_ids = {i for i, t in truth.items() if t["corruption"] == "duplicate"}
    assert dup_ids <= {r["id"] for r in rejected}
