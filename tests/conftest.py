"""Shared fixtures: small generated instruction files and a cached DigitsVQA build."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def digits_vqa(tmp_path_factory):
    """A default-size DigitsVQA build (about 3 s), shared by the whole session."""
    from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa

    out = tmp_path_factory.mktemp("digitsvqa")
    build_digits_vqa(out, DigitsVQAConfig())
    return out


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on a 2-core machine run faster on one torch thread than on oversubscribed ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(capsys):
    """Run `mmselect ARGS` in-process: (exit code, stdout, stderr)."""
    from selector.app.cli import main

    def run(*args):
        rc = main(["-q", *map(str, args)])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run
