"""Image datasets as in-memory tensors: digits, image folders, raw tensors, torchvision datasets already on disk.

Every loader returns an `ImageData`: normalised float32 images (N, C, H, W), int64 labels, class names, the
per-channel mean/std used to normalise, and `ids` (positions in the source dataset, kept through subsets and
splits so a pruned subset can always be traced back). `split` makes seeded, class-stratified train/val/test splits.

    data = load_digits_data(size=28)
    splits = split(data, (0.7, 0.15, 0.15), seed=0)
    splits.train.images.shape  # (1257, 1, 28, 28)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from selector.core.errors import MmselectError

logger = logging.getLogger(__name__)

__all__ = ["DataError", "ImageData", "Splits", "split", "from_tensors", "load_digits_data", "load_image_folder",
           "load_torchvision", "load_dataset", "dataset_files", "TORCHVISION_DATASETS", "IMAGE_SUFFIXES",
           "image_folder_files", "rejected_entries"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DataError(MmselectError):
    """An image dataset could not be loaded or split (missing files, inconsistent shapes, bad split fractions)."""


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset held in memory.

    images: float32 (N, C, H, W), already normalised with `mean`/`std` (per channel).
    labels: int64 (N,), values in [0, len(classes)).
    ids:    int64 (N,), the example's position in the dataset it was loaded from (survives `subset`/`split`).
    rejected: what the loader could not use, as (entry, reason) pairs (a folder dataset's undecodable files); only
            the loaded dataset carries it, not its subsets.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ids: torch.Tensor = field(default=None)  # type: ignore[assignment]
    name: str = ""
    rejected: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.images.ndim != 4:
            raise DataError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        n = self.images.shape[0]
        if self.labels.shape != (n,):
            raise DataError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise DataError(f"mean/std need one value per channel ({self.images.shape[1]})")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise DataError(f"labels must lie in [0, {len(self.classes)}), got [{int(self.labels.min())}, "
                            f"{int(self.labels.max())}]")
        object.__setattr__(self, "images", self.images.float())
        object.__setattr__(self, "labels", self.labels.long())
        ids = torch.arange(n) if self.ids is None else torch.as_tensor(self.ids).long()
        if ids.shape != (n,):
            raise DataError(f"ids must have shape ({n},), got {tuple(ids.shape)}")
        object.__setattr__(self, "ids", ids)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Height (images are square for every loader here; `width` is images.shape[3])."""
        return int(self.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> "ImageData":
        """The examples at `indices` (positions into this dataset), keeping their original ids."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageData(self.images[idx], self.labels[idx], self.classes, self.mean, self.std, self.ids[idx],
                         self.name)

    def with_images(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> "ImageData":
        """Same classes and normalisation, new (already normalised) images, e.g. a synthetic set."""
        labels = self.labels if labels is None else labels
        return ImageData(images, labels, self.classes, self.mean, self.std, None, self.name)

    def denormalise(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """Images back in [0, 1] pixel space (for saving or plotting)."""
        x = self.images if images is None else images
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)


@dataclass(frozen=True)
class Splits:
    train: ImageData
    val: ImageData
    test: ImageData


def split(data: ImageData, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
          stratify: bool = True) -> Splits:
    """Seeded train/val/test split; with `stratify` each class is split in the same proportions.

    Fractions must be non-negative and sum to 1 (a zero fraction gives an empty split).
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    groups = [np.flatnonzero(labels == c) for c in range(data.num_classes)] if stratify else [np.arange(len(data))]
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in groups:
        idx = rng.permutation(idx)
        n_train = int(round(fr[0] * len(idx)))
        n_val = int(round(fr[1] * len(idx)))
        n_val = min(n_val, len(idx) - n_train)
        for p, chunk in zip(parts, (idx[:n_train], idx[n_train:n_train + n_val], idx[n_train + n_val:])):
            p.append(chunk)
    out = [data.subset(np.sort(np.concatenate(p)).astype(np.int64)) for p in parts]
    return Splits(*out)


def from_tensors(images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                 classes: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, name: str = "tensors", ids: Sequence[int] | None = None,
                 rejected: Sequence[tuple[str, str]] = ()) -> ImageData:
    """Wrap raw images as `ImageData`.

    images: (N, C, H, W) or (N, H, W); uint8 (0..255) or float pixels in [0, 1]. They are normalised per channel with
    `mean`/`std` (computed from these images when not given). Pass already-normalised images with mean=0, std=1 to
    keep them as they are.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if classes is None:
        classes = [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
    c = x.shape[1]
    m = x.mean(dim=(0, 2, 3)) if mean is None else torch.tensor(list(mean), dtype=torch.float32)
    s = x.std(dim=(0, 2, 3)).clamp_min(1e-6) if std is None else torch.tensor(list(std), dtype=torch.float32)
    if m.numel() != c or s.numel() != c:
        raise DataError(f"mean/std need {c} values (one per channel)")
    x = (x - m.view(1, c, 1, 1)) / s.view(1, c, 1, 1)
    return ImageData(x.contiguous(), y, tuple(classes), tuple(float(v) for v in m), tuple(float(v) for v in s),
                     None if ids is None else torch.as_tensor(np.asarray(ids, dtype=np.int64)), name,
                     tuple(rejected))


def load_digits_data(size: int = 28, channels: int = 1) -> ImageData:
    """The 1,797 sklearn 8x8 digits, upscaled bilinearly to size x size (8 keeps them as they are).

    `channels=3` repeats the grey channel (for RGB models). Deterministic: no seed is needed.
    """
    from sklearn.datasets import load_digits

    if size < 1 or channels not in (1, 3):
        raise DataError(f"digits need size >= 1 and channels 1 or 3, got size={size}, channels={channels}")
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return from_tensors(x, torch.tensor(d.target), classes=[str(i) for i in range(10)], name=f"digits{size}")


NOT_A_FILE = "has an image name but is not a regular file (a folder, FIFO, socket or broken link)"


def image_folder_files(path: str | Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, str]]]:
    """(class names, [(image file, label)], [(entry, reason)]) of a folder with one sub-folder per class.

    Files come in the order `load_image_folder` reads them (classes sorted, files sorted within each class): a
    loaded example's id is its position here. Entries with an image name that are not regular files (a folder
    called x.png, a FIFO, a broken link) are never opened (a FIFO would block the read): they come back rejected."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected one sub-folder per class (root/CLASS/IMG.png)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError(f"image folder {root} has no class sub-folders; put images under {root}/<class>/")
    files, rejected = [], []
    for label, cdir in enumerate(class_dirs):
        for f in sorted(f for f in cdir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES):
            if f.is_file():
                files.append((f, label))
            else:
                rejected.append((f, NOT_A_FILE))
    return [d.name for d in class_dirs], files, rejected


def rejected_entries(data: ImageData) -> list[dict[str, str]]:
    """What the loader of `data` could not use, as the `rejected` list of a run's output: {"file", "reason"}."""
    return [{"file": entry, "reason": reason} for entry, reason in data.rejected]


def load_image_folder(path: str | Path, size: int | None = None, channels: int = 3) -> ImageData:
    """A folder with one sub-folder per class (`root/cat/001.png`), classes in sorted order.

    Images are converted to grey (channels=1) or RGB (channels=3) and resized to size x size when `size` is given;
    without `size` the most common dimensions are kept. A file that cannot be used (undecodable, truncated, a
    decompression bomb, a stuck or crashing decoder, not a regular file, or without `size` another size) costs that
    example, not the load: it is left out, listed in `rejected` with its reason (paths relative to the folder) and
    logged; the kept examples' ids are their positions in `image_folder_files`.
    """
    from collections import Counter

    from PIL import Image

    from selector.core.images import decode_all, decode_image, decode_workers

    root = Path(path)
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"channels must be 1 or 3, got {channels}")
    classes, files, not_files = image_folder_files(root)
    rejected = list(not_files)
    # The instruction readers' checks, shared: every file is first decoded in killable worker processes (pixel cap,
    # per-image timeout, a crashing decoder costs its file), then the good ones are decoded here for their pixels.
    problems = decode_all([str(f) for f, _ in files], workers=decode_workers(len(files)))
    kept = []  # (position, label, pixels)
    for position, ((f, label), problem) in enumerate(zip(files, problems)):
        image = None
        if problem is None:
            image, problem = decode_image(str(f))  # may still fail: the file can change after the check
        if problem is not None:
            rejected.append((f, problem))
            continue
        image = image.convert(mode)
        if size is not None:
            image = image.resize((size, size), Image.BILINEAR)
        kept.append((position, label, np.asarray(image, dtype=np.uint8)))
    if size is None and kept:  # without --image-size the common shape wins; a stray size costs its own file
        common, _ = Counter(a.shape for _, _, a in kept).most_common(1)[0]
        for position, _, a in kept:
            if a.shape != common:
                rejected.append((files[position][0], f"image is {a.shape[1]} x {a.shape[0]}, most are {common[1]} x "
                                                     f"{common[0]}; pass --image-size N to resize all images"))
        kept = [k for k in kept if k[2].shape == common]
    arrays = [a for _, _, a in kept]
    labels = [label for _, label, _ in kept]
    ids = [position for position, _, _ in kept]
    rejected = [(Path(f).relative_to(root).as_posix(), reason) for f, reason in rejected]
    if not arrays:
        why = f"; {len(rejected)} rejected, first: {rejected[0][0]} ({rejected[0][1]})" if rejected else ""
        raise DataError(f"image folder {root} has class sub-folders but no usable images "
                        f"({', '.join(IMAGE_SUFFIXES)}){why}")
    if rejected:
        logger.warning("%s: %d of %d image entries rejected (first: %s: %s); the run's output lists them all",
                       root, len(rejected), len(files) + len(not_files), *rejected[0])
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return from_tensors(x, np.asarray(labels), classes=classes, name=f"folder:{root}", ids=ids, rejected=rejected)


# name -> (torchvision class name, keyword for the split: "train" bool or "split" str)
TORCHVISION_DATASETS: dict[str, tuple[str, str]] = {
    "mnist": ("MNIST", "train"),
    "fashionmnist": ("FashionMNIST", "train"),
    "kmnist": ("KMNIST", "train"),
    "cifar10": ("CIFAR10", "train"),
    "cifar100": ("CIFAR100", "train"),
    "svhn": ("SVHN", "split"),
}


def load_torchvision(name: str, root: str | Path, train: bool = True) -> ImageData:
    """A torchvision dataset whose files are already under `root` (nothing is downloaded: we run offline).

    Names: mnist, fashionmnist, kmnist, cifar10, cifar100, svhn (case-insensitive). Normalised with the loaded split's
    own per-channel mean/std.
    """
    import torchvision

    key = name.lower().replace("-", "").replace("_", "")
    if key not in TORCHVISION_DATASETS:
        raise DataError(f"unknown torchvision dataset {name!r}; known: {', '.join(sorted(TORCHVISION_DATASETS))}")
    cls_name, split_kw = TORCHVISION_DATASETS[key]
    cls = getattr(torchvision.datasets, cls_name)
    kwargs = {"train": train} if split_kw == "train" else {"split": "train" if train else "test"}
    root = Path(root)
    try:
        ds = cls(root=str(root), download=False, **kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        folder = root / cls_name if split_kw == "train" and key in ("mnist", "fashionmnist", "kmnist") else root
        raise DataError(f"{cls_name} is not on disk under {folder} ({exc}). Downloads are off: fetch it on a "
                        f"connected machine (torchvision.datasets.{cls_name}(root='{root}', download=True)) and copy "
                        f"the files into {folder}") from exc
    data = ds.data if hasattr(ds, "data") else None
    data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if data.ndim == 4 and data.shape[-1] in (1, 3):  # CIFAR: N, H, W, C
        data = data.transpose(0, 3, 1, 2)
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = getattr(ds, "labels")
    targets = np.asarray(targets.numpy() if isinstance(targets, torch.Tensor) else targets)
    classes = getattr(ds, "classes", None) or [str(c) for c in range(int(targets.max()) + 1)]
    return from_tensors(data.astype(np.uint8), targets, classes=[str(c) for c in classes],
                        name=f"{key}:{'train' if train else 'test'}")


def load_dataset(spec: str, size: int | None = None, channels: int | None = None) -> ImageData:
    """Load by a short spec, as the CLI accepts it.

    "digits" (size defaults to 28), "folder:PATH" (channels default 3), "mnist:ROOT", "cifar10:ROOT", ... for
    torchvision datasets on disk (their train split).
    """
    kind, _, arg = spec.partition(":")
    kind_key = kind.lower().replace("-", "").replace("_", "")
    if kind_key == "digits":
        return load_digits_data(size=size or 28, channels=channels or 1)
    if kind_key == "folder":
        if not arg:
            raise DataError("folder dataset needs a path: --dataset folder:PATH")
        return load_image_folder(arg, size=size, channels=channels or 3)
    if kind_key in TORCHVISION_DATASETS:
        if not arg:
            raise DataError(f"{kind} needs the folder that holds its files: --dataset {kind}:ROOT")
        data = load_torchvision(kind_key, arg, train=True)
        if size is not None and size != data.image_size:
            x = torch.nn.functional.interpolate(data.images, size=(size, size), mode="bilinear", align_corners=False)
            data = ImageData(x, data.labels, data.classes, data.mean, data.std, data.ids, data.name)
        return data
    raise DataError(f"unknown dataset {spec!r}; use digits, folder:PATH, or one of "
                    f"{', '.join(k + ':ROOT' for k in sorted(TORCHVISION_DATASETS))}")


def dataset_files(spec: str) -> list[Path]:
    """The files a dataset spec reads (the images of a folder dataset, every file under a torchvision root; none
    for the built-in digits): what an output must never replace."""
    kind, _, arg = spec.partition(":")
    kind_key = kind.lower().replace("-", "").replace("_", "")
    if kind_key == "folder" and arg and Path(arg).is_dir():
        return [f for f, _ in image_folder_files(arg)[1]]
    if kind_key in TORCHVISION_DATASETS and arg and Path(arg).is_dir():
        return [f for f in Path(arg).rglob("*") if f.is_file()]
    return []
