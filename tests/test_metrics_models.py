"""Model-backed metrics through the real loaders: tiny random-init open_clip / HF CLIP / reward / LLM built from
configs and saved in their libraries' layouts; a real sentence encoder (bundled MiniLM); offline errors."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from metrics import build
from metrics.runner import RunnerConfig, score_records
from selector.core.errors import MmselectError, ModelNotAvailable


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.fixtures.tiny_models import build_tiny_hf_clip, build_tiny_llm, build_tiny_open_clip, build_tiny_reward

    root = tmp_path_factory.mktemp("tiny-models")
    return {"oc": build_tiny_open_clip(root / "oc"), "hf": build_tiny_hf_clip(root / "hf"),
            "reward": build_tiny_reward(root / "reward"), "llm": build_tiny_llm(root / "llm")}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


ANSWERS = ["A red square. It is bright. It sits in the middle.", "Blue.", "", "Green grass. Trees.",
           "One sentence only", "Dots. . . and more dots."]


def _records(n=6):
    return pa.table({"id": [f"r{i}" for i in range(n)], "instruction": ["Describe the image."] * n,
                     "answer": ANSWERS[:n], "images": [[f"{i}.png"] for i in range(n)]})


def test_open_clip_local_dir_and_arch_with_checkpoint_file_agree(tiny, images):
    import open_clip

    from metrics.clip import split_sentences
    from metrics.clip_models import load_clip

    cfg_dir = tiny["oc"].parent / "oc-arch"
    cfg_dir.mkdir(exist_ok=True)
    cfg = json.loads((tiny["oc"] / "open_clip_config.json").read_text())
    (cfg_dir / "MmselectTiny.json").write_text(json.dumps(cfg["model_cfg"]))
    open_clip.add_model_config(cfg_dir)
    a = build("clip", model=f"local-dir:{tiny['oc']}")
    b = build("clip", model="MmselectTiny", pretrained=str(tiny["oc"] / "open_clip_model.safetensors"),
              column="clip_b")
    out = score_records(_records(), [a, b], RunnerConfig(batch_size=4, workers=1), images_root=str(images))
    va, vb = out.column("clip").to_numpy(), out.column("clip_b").to_numpy()
    assert np.isnan(va[2]) and out.column("clip__reason")[2].as_py() == "empty answer"
    ok = ~np.isnan(va)
    assert ok.sum() == 5 and np.all(np.abs(va[ok]) <= 100)
    np.testing.assert_allclose(va[ok], vb[ok], rtol=1e-5, atol=1e-4)

    # the InstructionGPT-4 formula: 100 * <normalised image, mean of normalised sentence embeddings>
    backend = load_clip(f"local-dir:{tiny['oc']}", None, "cpu")
    import torch

    img = a.preprocess(str(images / "0.png"))[None]
    with torch.inference_mode():
        e_img = backend.encode_images(img)[0]
        e_txt = backend.encode_texts(split_sentences(ANSWERS[0])).mean(0)
    assert va[0] == pytest.approx(100 * float(e_img @ e_txt), rel=1e-5, abs=1e-4)
    assert split_sentences(ANSWERS[5]) == ["Dots", "and more dots"]
    assert len(split_sentences(". ".join(map(str, range(30))))) == 10


def test_truncate_mode_and_hf_clip_and_embeddings(tiny, images):
    metrics = [build("clip", model=f"hf:{tiny['hf']}", text_mode="truncate", column="clip_hf"),
               build("embed-image", model=f"hf:{tiny['hf']}"),
               build("embed-text", encoder="clip", model=f"local-dir:{tiny['oc']}", column="emb_clip")]
    out = score_records(_records(), metrics, RunnerConfig(batch_size=3, workers=0), images_root=str(images))
    v = out.column("clip_hf").to_numpy()
    assert np.isfinite(v[[0, 1, 3, 4, 5]]).all() and np.isnan(v[2])
    emb = np.array(out.column("embed-image").to_pylist(), dtype=np.float32)
    assert emb.shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)
    assert out.column("emb_clip").type.list_size == 16


def test_sentence_encoder_carries_meaning():
    table = pa.table({"id": ["a", "b", "c"], "instruction": ["", "", ""],
                      "answer": ["A cat is sleeping on the sofa.", "A kitten naps on the couch.",
                                 "Quarterly earnings lifted the stock market."], "images": [[], [], []]})
    out = score_records(table, [build("embed-text", text="answer")], RunnerConfig(batch_size=3))
    e = np.array(out.column("embed-text").to_pylist())
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_llm_last_token_ignores_padding_and_hf_judge_reports_failures(tiny):
    rows = {"id": ["s", "l"], "instruction": ["Hi", "Hi"], "answer": ["short", "a much longer answer " * 5],
            "images": [[], []]}
    metric = build("embed-text", encoder=f"llm:{tiny['llm']}", column="emb_llm")
    both = score_records(pa.table(rows), [metric], RunnerConfig(batch_size=2))
    alone = score_records(pa.table({k: v[:1] for k, v in rows.items()}), [metric], RunnerConfig(batch_size=1))
    np.testing.assert_allclose(both.column("emb_llm")[0].as_py(), alone.column("emb_llm")[0].as_py(), atol=1e-5)

    judge = build("judge", backend="hf", model=str(tiny["llm"]), max_tokens=3)
    out = score_records(pa.table(rows), [judge], RunnerConfig(batch_size=2))
    for value, reason in zip(out.column("judge").to_pylist(), out.column("judge__reason").to_pylist()):
        assert (value is None) == (reason is not None)  # scored, or missing with a reason
        assert value is None or 0 <= value <= 100


def test_reward_raw_logit_and_counted_truncation(tiny):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    long = "word " * 80
    table = pa.table({"id": ["a", "b", "c"], "instruction": ["Say hi.", "Say hi.", "Say hi."],
                      "answer": ["hi there", long, "hello"], "images": [[], [], []]})
    metric = build("reward", model=str(tiny["reward"]), max_length=32)
    out = score_records(table, [metric], RunnerConfig(batch_size=2))
    assert out.column("reward__truncated").to_pylist() == [False, True, False]
    assert metric.stats()["truncated"] == 1
    tok = AutoTokenizer.from_pretrained(tiny["reward"])
    net = AutoModelForSequenceClassification.from_pretrained(tiny["reward"]).eval()
    with torch.no_grad():
        want = net(**tok(["Say hi."], ["hi there"], return_tensors="pt")).logits[0, 0].item()
    assert out.column("reward")[0].as_py() == pytest.approx(want, abs=1e-4)


def test_missing_models_offline_name_model_and_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="--reward-model"):
        build("reward", model="no-such-org/no-such-reward-model").setup("cpu")
    with pytest.raises(ModelNotAvailable, match="ViT-bigG-14.*--clip-pretrained"):
        build("clip").setup("cpu")
    with pytest.raises(ModelNotAvailable, match="--clip-model"):
        build("clip", model=f"local-dir:{tmp_path / 'nothing'}").setup("cpu")
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Y"}}))
    from selector.core.resolve import resolve_hf_model

    with pytest.raises(MmselectError, match="--trust-remote-code"):
        resolve_hf_model(str(tmp_path / "remote"), flag="--reward-model")
    assert resolve_hf_model(str(tmp_path / "remote"), flag="--reward-model", trust_remote_code=True)
