"""Networks for image pruning and condensation: the DC family's ConvNet-3, a small-input ResNet-18, a tiny ViT.

Every net here has the same two-part shape: `embed(x)` gives the penultimate features (N, embed_dim) and
`classifier` (an nn.Linear) maps them to logits, so `forward(x) == classifier(embed(x))`. Herding, k-center,
distribution matching and the like use `embed`; pruning scores use the logits.

`build_net(name, channels, num_classes, image_size, seed)` builds one deterministically from `seed` without touching
the global RNG (the reference code reseeds from the wall clock inside network construction; we never do).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from selector.core.errors import MmselectError
from vision import NETS

log = logging.getLogger(__name__)

__all__ = ["ConvNet", "ResNet18", "TinyViT", "build_net", "NETS", "NET_NAMES", "default_device"]


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ConvNet(nn.Module):
    """ConvNet-D as in Zhao et al. (DC/DSA/DM): `depth` blocks of conv3x3(width) -> norm -> ReLU -> avgpool 2x2,
    then one linear layer on the flattened features.

    norm="instancenorm" is GroupNorm(width, width) with affine parameters (the DC definition); "batchnorm",
    "layernorm" (GroupNorm(1, width)) and "none" are offered for ablations. For 28x28 inputs the first conv is padded
    by 3 so the feature map is 32x32, as in the reference; otherwise padding is 1.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int = 32, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm"):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, size = channels, image_size
        for d in range(depth):
            pad = 3 if d == 0 and image_size == 28 else 1
            layers.append(nn.Conv2d(in_ch, width, kernel_size=3, padding=pad))
            size = size + 2 * pad - 2
            if norm == "instancenorm" and size < 4 and d == depth - 1:
                log.warning("ConvNet-%d on %dx%d inputs normalises %dx%d maps in its last block: instance norm over "
                            "so few values is unstable (dataset condensation diverged on 8x8 digits in our checks); "
                            "upscale the images (e.g. image_size 32) or use a shallower net", depth, image_size,
                            image_size, size, size)
            layers.append(_norm(norm, width))
            layers.append(nn.ReLU(inplace=True))
            layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
            size //= 2
            in_ch = width
        if size < 1:
            raise MmselectError(f"ConvNet depth {depth} is too deep for {image_size}x{image_size} inputs; "
                                f"use depth <= {max(1, image_size.bit_length() - 1)} or larger images")
        self.features = nn.Sequential(*layers)
        self.embed_dim = width * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(width, width, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(width)
    if kind == "layernorm":
        return nn.GroupNorm(1, width, affine=True)
    if kind == "none":
        return nn.Identity()
    raise MmselectError(f"unknown norm {kind!r}; use instancenorm, batchnorm, layernorm or none")


class ResNet18(nn.Module):
    """torchvision's ResNet-18 for small inputs: 3x3 stride-1 stem, no max-pool, any number of input channels.

    norm="batchnorm" is torchvision's default; "instancenorm" swaps every BatchNorm for GroupNorm(C, C), which keeps
    per-sample gradients (GraNd via torch.func) independent of the batch.
    """

    def __init__(self, channels: int, num_classes: int, norm: str = "batchnorm"):
        super().__init__()
        from torchvision.models import resnet18

        norm_layer = None if norm == "batchnorm" else (lambda c: _norm(norm, c))
        body = resnet18(weights=None, num_classes=num_classes, norm_layer=norm_layer)
        body.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        body.maxpool = nn.Identity()
        self.classifier = body.fc
        body.fc = nn.Identity()
        self.body = body
        self.embed_dim = self.classifier.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class TinyViT(nn.Module):
    """A small timm VisionTransformer (patch 4, [CLS] pooling); `embed` is the pre-logits [CLS] feature."""

    def __init__(self, channels: int, num_classes: int, image_size: int = 32, dim: int = 192, depth: int = 6,
                 heads: int = 3, patch: int = 4):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if image_size % patch:
            raise MmselectError(f"ViT patch size {patch} does not divide image size {image_size}")
        self.body = VisionTransformer(img_size=image_size, patch_size=patch, in_chans=channels,
                                      num_classes=num_classes, embed_dim=dim, depth=depth, num_heads=heads)
        self.classifier = self.body.head
        self.embed_dim = dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_head(self.body.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


NET_NAMES = tuple(NETS.names())


def build_net(name: str, channels: int, num_classes: int, image_size: int, seed: int = 0, **options) -> nn.Module:
    """Build a network with weights drawn from `seed` (the global torch RNG is left as it was).

    name: "convnet" (options: width=128, depth=3, norm="instancenorm"), "resnet18" (norm="batchnorm"),
    "vit" (dim, depth, heads, patch). Nets that take `image_size` get it; an unknown name raises `UnknownName`.
    """
    import inspect

    cls = NETS.get(name)
    if "image_size" in inspect.signature(cls).parameters:
        options = {"image_size": image_size, **options}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(channels, num_classes, **options)
