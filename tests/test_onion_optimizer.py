"""The shared loop's optimiser choice (`TrainConfig.optimizer`) and its pass-through to the onion run and CLI."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vision.train import TrainConfig, make_optimizer, train


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 2, 2, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    return net, x, y


def test_optimizer_default_is_sgd_and_unknown_names_fail_clearly():
    net, _, _ = _problem()
    assert TrainConfig().optimizer == "sgd"
    sgd = make_optimizer(net, TrainConfig(lr=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adamw = make_optimizer(net, TrainConfig(optimizer="adamw", lr=2e-3, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["lr"] == 2e-3 and adamw.defaults["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; choose one of sgd, adamw"):
        TrainConfig(optimizer="adam")


def test_train_with_adamw_takes_exactly_adamw_steps():
    net, x, y = _problem()
    ref = copy.deepcopy(net)
    # Full-batch epochs: the shuffle order cannot change the gradient, so the loop must match plain AdamW steps.
    train(net, (x, y), TrainConfig(epochs=3, optimizer="adamw", lr=0.01, weight_decay=0.05, batch_size=40,
                                   decay_at=(), device="cpu"))
    opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.05)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    sgd_net = copy.deepcopy(_problem()[0])
    train(sgd_net, (x, y), TrainConfig(epochs=3, lr=0.01, batch_size=40, decay_at=(), device="cpu"))
    assert not torch.allclose(sgd_net[1].weight, net[1].weight)


def test_onion_config_and_cli_pass_the_optimizer_through(tmp_path, capsys):
    import json

    from selector.app.cli import main
    from vision.onion.run import OnionConfig

    assert (OnionConfig().optimizer, OnionConfig().lr, OnionConfig().weight_decay) == ("adamw", 3e-3, 0.05)
    with pytest.raises(ValueError, match="unknown optimizer"):
        OnionConfig(optimizer="lbfgs")
    out = tmp_path / "sgd"
    tiny = ["--dataset", "digits", "--image-size", "8", "--patch", "4", "--dim", "12", "--depth", "1", "--epochs", "1",
            "--split", "0.1", "0.05", "0.85", "--levels", "none", "--device", "cpu"]
    assert main(["-q", "onion", *tiny, "--optimizer", "sgd", "--lr", "0.05", "--weight-decay", "5e-4",
                 "--out", str(out)]) == 0
    config = json.loads((out / "report.json").read_text())["config"]
    assert (config["optimizer"], config["lr"], config["weight_decay"]) == ("sgd", 0.05, 5e-4)
    assert main(["-q", "onion", *tiny, "--optimizer", "adam", "--out", str(tmp_path / "bad")]) == 2
    assert "invalid choice: 'adam'" in capsys.readouterr().err
