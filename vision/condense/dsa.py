"""Differentiable siamese augmentation (DSA, Zhao & Bilen, ICML 2021), batched on the device.

One call samples the transform parameters ONCE (from a `torch.Generator`, never the clock) and applies them to a
whole batch with tensor ops: colour (brightness, saturation, contrast), crop (translation with zero padding),
cutout, flip, scale and rotate. Every op is differentiable with respect to the images, so gradients reach
synthetic images through the augmentation.

Parameters live in groups: an `AugParams` holds G parameter sets and each image uses the set of its group. One
group shared by a real and a synthetic batch is the siamese use (the same transform on both); one group per class
augments all classes in one call; one group per image is ordinary random augmentation for training.

The reference code draws parameters inside every op with per-image Python-side seeding; here sampling and
application are separate so the same `AugParams` can be replayed exactly (on the real batch, the synthetic batch,
or image by image for the speed baseline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

__all__ = ["DSAConfig", "AugParams", "DSA", "FAMILIES"]

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAConfig:
    """DSA settings; defaults are the reference `ParamDiffAug`.

    mode "single" picks one family per call at random (the reference's default 'S' mode); "all" applies every
    family in `strategy` order (the reference's 'M' mode).
    """

    strategy: tuple[str, ...] = FAMILIES
    mode: str = "single"
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self):
        unknown = [s for s in self.strategy if s not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown DSA transform(s) {unknown}; choose from {list(FAMILIES)}")
        if self.mode not in ("single", "all"):
            raise ValueError(f"DSA mode must be 'single' or 'all', got {self.mode!r}")

    @classmethod
    def parse(cls, strategy: str, **kw) -> "DSAConfig":
        """From the reference's string form, e.g. 'color_crop_cutout_flip_scale_rotate'."""
        parts = tuple(p for p in strategy.split("_") if p)
        return cls(strategy=parts, **kw)


@dataclass
class AugParams:
    """G sampled parameter sets (every tensor has length G) plus the families they switch on."""

    families: tuple[str, ...]
    brightness: torch.Tensor
    saturation: torch.Tensor
    contrast: torch.Tensor
    shift_x: torch.Tensor  # integer pixel translations
    shift_y: torch.Tensor
    cut_x: torch.Tensor  # cutout centre offsets
    cut_y: torch.Tensor
    flip: torch.Tensor  # bool
    scale_x: torch.Tensor
    scale_y: torch.Tensor
    angle: torch.Tensor  # radians
    groups: int = 0

    _TENSORS = ("brightness", "saturation", "contrast", "shift_x", "shift_y", "cut_x", "cut_y", "flip",
                "scale_x", "scale_y", "angle")

    def to(self, device) -> "AugParams":
        return replace(self, **{k: getattr(self, k).to(device) for k in self._TENSORS})

    def take(self, index: torch.Tensor) -> "AugParams":
        """The parameter sets at `index` (a new AugParams with len(index) groups)."""
        return replace(self, groups=len(index), **{k: getattr(self, k)[index] for k in self._TENSORS})


class DSA:
    """Sample and apply differentiable augmentations; see the module docstring."""

    def __init__(self, config: DSAConfig | None = None):
        self.config = config or DSAConfig()

    # ---- sampling -------------------------------------------------------------------------------------------
    def sample(self, groups: int, height: int, width: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> AugParams:
        """Draw `groups` parameter sets from `generator` (on the generator's device), and the call's families."""
        c, g = self.config, generator
        gd = g.device
        if c.mode == "single":
            pick = int(torch.randint(len(c.strategy), (1,), generator=g, device=gd))
            families = (c.strategy[pick],)
        else:
            families = tuple(c.strategy)
        r = lambda: torch.rand(groups, generator=g, device=gd)  # noqa: E731
        shift_h, shift_w = int(height * c.ratio_crop_pad + 0.5), int(width * c.ratio_crop_pad + 0.5)
        cut_h, cut_w = int(height * c.ratio_cutout + 0.5), int(width * c.ratio_cutout + 0.5)
        lo = 1.0 / c.ratio_scale
        params = AugParams(
            families=families,
            brightness=(r() - 0.5) * c.brightness,
            saturation=r() * c.saturation,
            contrast=r() + c.contrast,
            shift_x=torch.randint(-shift_w, shift_w + 1, (groups,), generator=g, device=gd),
            shift_y=torch.randint(-shift_h, shift_h + 1, (groups,), generator=g, device=gd),
            cut_x=torch.randint(0, width + (1 - cut_w % 2), (groups,), generator=g, device=gd),
            cut_y=torch.randint(0, height + (1 - cut_h % 2), (groups,), generator=g, device=gd),
            flip=r() < c.prob_flip,
            scale_x=r() * (c.ratio_scale - lo) + lo,
            scale_y=r() * (c.ratio_scale - lo) + lo,
            angle=(r() - 0.5) * 2 * c.ratio_rotate / 180 * math.pi,
            groups=groups,
        )
        return params.to(device)

    # ---- application ----------------------------------------------------------------------------------------
    def apply(self, x: torch.Tensor, params: AugParams, index: torch.Tensor | None = None) -> torch.Tensor:
        """Augment x (N, C, H, W): image i uses parameter set index[i] (default: all share set 0 if G == 1,
        else set i)."""
        n = x.shape[0]
        if index is None:
            if params.groups == 1:
                index = torch.zeros(n, dtype=torch.long, device=x.device)
            elif params.groups == n:
                index = torch.arange(n, device=x.device)
            else:
                raise ValueError(f"{params.groups} parameter sets for {n} images: pass index= to map images to sets")
        p = params.take(index)
        for fam in params.families:
            x = getattr(self, f"_{fam}")(x, p)
        return x.contiguous()

    def apply_per_image(self, x: torch.Tensor, params: AugParams, index: torch.Tensor | None = None) -> torch.Tensor:
        """The same transforms, one image at a time: the unbatched baseline the speed benchmark compares against."""
        n = x.shape[0]
        if index is None:
            index = torch.zeros(n, dtype=torch.long) if params.groups == 1 else torch.arange(n)
        return torch.cat([self.apply(x[i:i + 1], params.take(index[i:i + 1])) for i in range(n)])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Independent random augmentation per image (training-time use)."""
        return self.apply(x, self.sample(x.shape[0], x.shape[2], x.shape[3], generator, x.device))

    def siamese(self, real: torch.Tensor, syn: torch.Tensor, generator: torch.Generator,
                real_groups: torch.Tensor | None = None, syn_groups: torch.Tensor | None = None,
                n_groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ONE sampled transform per group to both batches (the siamese use). With n_groups > 1, pass each
        image's group (e.g. its class) in real_groups / syn_groups so all classes are augmented in one call."""
        params = self.sample(n_groups, real.shape[2], real.shape[3], generator, real.device)
        if n_groups > 1 and (real_groups is None or syn_groups is None):
            raise ValueError("siamese with n_groups > 1 needs real_groups and syn_groups")
        return self.apply(real, params, real_groups), self.apply(syn, params, syn_groups)

    # ---- the transforms (p holds one parameter set per image) ------------------------------------------------
    @staticmethod
    def _color(x, p):
        n = x.shape[0]
        x = x + p.brightness.view(n, 1, 1, 1)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * p.saturation.view(n, 1, 1, 1) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * p.contrast.view(n, 1, 1, 1) + m

    @staticmethod
    def _crop(x, p):
        # Translate by whole pixels; pixels shifted in from outside are zero (a 1-pixel zero border, clamped to).
        n, _, h, w = x.shape
        xp = F.pad(x, (1, 1, 1, 1))
        iy = (torch.arange(h, device=x.device).view(1, h) + p.shift_y.view(n, 1) + 1).clamp(0, h + 1)
        ix = (torch.arange(w, device=x.device).view(1, w) + p.shift_x.view(n, 1) + 1).clamp(0, w + 1)
        b = torch.arange(n, device=x.device).view(n, 1, 1)
        out = xp.permute(0, 2, 3, 1)[b, iy.view(n, h, 1), ix.view(n, 1, w)]  # (n, h, w, c)
        return out.permute(0, 3, 1, 2)

    def _cutout(self, x, p):
        n, _, h, w = x.shape
        ch, cw = int(h * self.config.ratio_cutout + 0.5), int(w * self.config.ratio_cutout + 0.5)
        ys = torch.arange(h, device=x.device).view(1, h)
        xs = torch.arange(w, device=x.device).view(1, w)
        y0 = (p.cut_y - ch // 2).view(n, 1)
        x0 = (p.cut_x - cw // 2).view(n, 1)
        in_y = (ys >= y0) & (ys < y0 + ch)
        in_x = (xs >= x0) & (xs < x0 + cw)
        keep = ~(in_y.view(n, h, 1) & in_x.view(n, 1, w))
        return x * keep.unsqueeze(1).to(x.dtype)

    @staticmethod
    def _flip(x, p):
        return torch.where(p.flip.view(-1, 1, 1, 1), x.flip(3), x)

    @staticmethod
    def _affine(x, theta):
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)

    def _scale(self, x, p):
        z = torch.zeros_like(p.scale_x)
        theta = torch.stack([torch.stack([p.scale_x, z, z], 1), torch.stack([z, p.scale_y, z], 1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x, p):
        cos, sin, z = torch.cos(p.angle), torch.sin(p.angle), torch.zeros_like(p.angle)
        theta = torch.stack([torch.stack([cos, sin, z], 1), torch.stack([-sin, cos, z], 1)], 1)
        return self._affine(x, theta)

