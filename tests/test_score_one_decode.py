"""`mmselect score --num-processes 2` validates the input once: each image is decoded for validation once in all,
not once per process (counted by a decoder wrapped in every Python process the run starts)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Loaded by every Python process of the run (PYTHONPATH puts it first): appends one line per validating decode.
COUNTER = '''
import os
import selector.core.images as images

_decode = images.pillow_decode


def counted(f, keep=True):
    with open(os.environ["DECODE_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return _decode(f, keep)


images.pillow_decode = counted
'''


@pytest.mark.processes
@pytest.mark.slow
def test_two_processes_decode_each_image_once_for_validation(digits_vqa, tmp_path):
    lines = (digits_vqa / "val.jsonl").read_text().splitlines()[:40]
    data = tmp_path / "val40.jsonl"
    data.write_text("\n".join(lines) + "\n")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(COUNTER)
    log = tmp_path / "decodes.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", DECODE_LOG=str(log),
               PYTHONPATH=os.pathsep.join(filter(None, [str(hook), str(ROOT), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "scores.parquet"
    proc = subprocess.run([sys.executable, "-m", "selector.app.cli", "-q", "score", str(data), "--images",
                           str(digits_vqa), "--metrics", "length", "--out", str(out), "--num-processes", "2",
                           "--workers", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    images = {json.loads(line)["image"] for line in lines}
    decodes = log.read_text().splitlines()
    assert len(decodes) == len(images)  # once per image in all (it was once per image per process)
    table = pq.read_table(out)
    assert table.num_rows == 40 and table.column("length").null_count == 0
