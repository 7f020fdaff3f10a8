"""Helpers for the hardening suite: small instruction files written byte by byte, and the CLI run in-process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def rec(i, answer: str | None = None, **fields) -> dict:
    r = {"id": f"r{i}", "conversations": [{"from": "human", "value": f"question {i}"},
                                          {"from": "gpt", "value": answer or f"answer number {i} " + "x" * (i % 13)}]}
    r.update(fields)
    return r


def line(obj) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()


def write_jsonl(path: Path, rows, end: bytes = b"\n") -> Path:
    path.write_bytes(b"".join(line(r) + end for r in rows))
    return path


def verdicts(rs) -> dict[int, str | None]:
    """line -> reason (None = valid)."""
    t = rs.table
    return dict(zip(t.column("line").to_pylist(), t.column("reason").to_pylist()))


@pytest.fixture
def png(tmp_path):
    from PIL import Image

    def make(path: Path, size=(8, 8)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 30, 30)).save(path)
        return path
    return make


@pytest.fixture
def folder_dataset(tmp_path, png):
    """An image-folder dataset (`--dataset folder:PATH`): classes a and b, four PNGs each."""
    for c in ("a", "b"):
        for i in range(4):
            png(tmp_path / "ds" / c / f"{i}.png")
    return tmp_path / "ds"
