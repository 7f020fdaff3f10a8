"""vision.data / vision.nets / vision.train: loaders, splits, network shapes, the seeded training loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.core.errors import MmselectError
from vision.data import DataError, from_tensors, load_dataset, load_digits_data, load_image_folder, \
    load_torchvision, split
from vision.nets import build_net
from vision.train import Hook, TrainConfig, embeddings, evaluate, train



@pytest.fixture(scope="module")
def digits16():
    return load_digits_data(size=16)


@pytest.fixture(scope="module")
def digits8():
    return load_digits_data(size=8)


def test_digits_loader_shapes_and_normalisation(digits16):
    assert digits16.images.shape == (1797, 1, 16, 16)
    assert digits16.num_classes == 10
    assert abs(float(digits16.images.mean())) < 1e-4
    assert abs(float(digits16.images.std()) - 1.0) < 1e-2
    raw = digits16.denormalise()
    assert float(raw.min()) >= 0 and float(raw.max()) <= 1
    assert load_digits_data(size=8, channels=3).images.shape == (1797, 3, 8, 8)


def test_split_is_seeded_stratified_and_disjoint(digits16):
    a, b, c = split(digits16, (0.6, 0.2, 0.2), seed=3), split(digits16, (0.6, 0.2, 0.2), seed=3), split(digits16, seed=4)
    assert torch.equal(a.train.ids, b.train.ids) and not torch.equal(a.train.ids, c.train.ids)
    ids = torch.cat([a.train.ids, a.val.ids, a.test.ids])
    assert len(ids) == len(digits16) and len(torch.unique(ids)) == len(digits16)
    frac = a.val.class_counts() / digits16.class_counts()
    assert np.all(np.abs(frac - 0.2) < 0.02)
    # ids trace back to the source images
    assert torch.equal(a.test.images[5], digits16.images[a.test.ids[5]])
    with pytest.raises(DataError):
        split(digits16, (0.5, 0.5, 0.5))


def test_from_tensors_and_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = load_image_folder(tmp_path, size=8)
    assert data.images.shape == (6, 3, 8, 8) and data.classes == ("cat", "dog")
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert load_dataset(f"folder:{tmp_path}", size=8, channels=1).images.shape == (6, 1, 8, 8)
    Image.fromarray(rng.integers(0, 255, (5, 5, 3), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    mixed = load_image_folder(tmp_path)  # no --image-size: the common shape wins, the stray one is rejected
    assert mixed.images.shape == (6, 3, 10, 12) and mixed.ids.tolist() == [0, 1, 2, 3, 4, 5]
    assert mixed.rejected == (("dog/odd.png", "image is 5 x 5, most are 12 x 10; pass --image-size N to resize all "
                                              "images"),)
    t = from_tensors(torch.zeros(4, 2, 5, 5, dtype=torch.uint8) + 255, torch.tensor([0, 1, 1, 0]))
    assert t.classes == ("0", "1") and t.channels == 2


def test_missing_torchvision_dataset_names_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)) as err:
        load_torchvision("mnist", tmp_path)
    assert "MNIST" in str(err.value)
    with pytest.raises(MmselectError, match="unknown dataset"):
        load_dataset("imagenet:/x")


@pytest.mark.parametrize("name,size", [("convnet", 28), ("convnet", 32), ("resnet18", 16), ("vit", 16)])
def test_nets_expose_embedding_and_logits(name, size):
    opts = {"depth": 1, "dim": 32, "heads": 2} if name == "vit" else {}
    net = build_net(name, 3, 7, size, seed=0, **opts).eval()
    x = torch.randn(2, 3, size, size)
    emb = net.embed(x)
    assert emb.shape == (2, net.embed_dim)
    assert torch.allclose(net(x), net.classifier(emb), atol=1e-5)
    if name == "convnet":
        assert net.embed_dim == 128 * 4 * 4  # 28x28 is padded to 32x32, like 32x32
        assert isinstance(net.features[1], torch.nn.GroupNorm) and net.features[1].num_groups == 128


def test_build_net_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = build_net("convnet", 1, 10, 16, seed=1, width=8), build_net("convnet", 1, 10, 16, seed=1, width=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(MmselectError):
        build_net("vgg", 1, 10, 16)


class _Counter(Hook):
    def __init__(self):
        self.seen, self.epochs = [], 0

    def on_batch(self, b):
        self.seen.append(b.indices.cpu())
        assert b.loss.shape == b.labels.shape == (len(b.indices),)

    def on_epoch(self, info):
        self.epochs += 1
        return self.epochs == 3  # stop early


def test_train_is_reproducible_learns_and_calls_hooks(digits8):
    s = split(digits8, seed=0)
    cfg = TrainConfig(epochs=4, batch_size=128, lr=0.05, seed=2, device="cpu")
    runs = []
    for _ in range(2):
        hook = _Counter()
        net = build_net("convnet", 1, 10, 8, seed=0, width=16, depth=2)
        res = train(net, s.train, cfg, val=s.val, hooks=[hook])
        runs.append(res)
    assert runs[0].epochs_run == 3 and hook.epochs == 3
    seen = torch.cat(hook.seen)
    assert len(seen) == 3 * len(s.train) and torch.equal(torch.sort(seen[:len(s.train)])[0], torch.arange(len(s.train)))
    assert all(torch.equal(p, q) for p, q in zip(runs[0].net.parameters(), runs[1].net.parameters()))
    assert evaluate(runs[0].net, s.test).accuracy > 0.8
    assert embeddings(runs[0].net, s.test).shape == (len(s.test), runs[0].net.embed_dim)


def test_checkpoint_selected_on_validation(digits8):
    s = split(digits8, seed=0)
    net = build_net("convnet", 1, 10, 8, seed=0, width=8, depth=2)
    res = train(net, s.train, TrainConfig(epochs=4, batch_size=128, lr=0.05, val_every=1, device="cpu"), val=s.val)
    val_accs = [h["val_accuracy"] for h in res.history]
    assert res.best_epoch == int(np.argmax(val_accs))
    assert res.val.accuracy == pytest.approx(max(val_accs))
    assert evaluate(res.net, s.val).accuracy == pytest.approx(max(val_accs))


def test_augment_is_seeded_and_soft_labels_match_hard(digits8):
    s = split(digits8, seed=0)
    calls = []

    def noise(x, gen):
        calls.append(len(x))
        return x + 0.1 * torch.randn(x.shape, generator=gen, device=x.device)

    cfg = TrainConfig(epochs=2, batch_size=256, lr=0.05, seed=5, device="cpu", augment=noise)
    nets = [train(build_net("convnet", 1, 10, 8, seed=0, width=4, depth=2), s.train, cfg).net for _ in range(2)]
    assert sum(calls) == 4 * len(s.train)
    assert all(torch.equal(p, q) for p, q in zip(nets[0].parameters(), nets[1].parameters()))
    hard = train(build_net("convnet", 1, 10, 8, seed=0, width=4, depth=2), s.train,
                 TrainConfig(epochs=1, batch_size=256, device="cpu")).net
    soft_labels = torch.nn.functional.one_hot(s.train.labels, 10).float()
    soft = train(build_net("convnet", 1, 10, 8, seed=0, width=4, depth=2), (s.train.images, soft_labels),
                 TrainConfig(epochs=1, batch_size=256, device="cpu")).net
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(hard.parameters(), soft.parameters()))


def test_convnet_warns_when_its_last_instance_norm_sees_tiny_maps(caplog):
    from vision.nets import ConvNet

    with caplog.at_level("WARNING", logger="vision.nets"):
        ConvNet(1, 10, image_size=32)
        assert not caplog.records
        ConvNet(1, 10, image_size=8)
    assert len(caplog.records) == 1 and "2x2 maps" in caplog.records[0].getMessage()
