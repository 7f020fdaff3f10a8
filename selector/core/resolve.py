"""One place where model names become loadable sources: local path -> HF / open_clip cache -> hub.

Every model the project loads (CLIP, reward model, judge LLM, text encoders, the fine-tuned VLM) goes through these
functions, so offline behaviour is the same everywhere: when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set, or
the hub cannot be reached, a model that is not on disk raises `ModelNotAvailable` naming the model and the CLI flag
that takes a local path, instead of a long network traceback.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from selector.core.errors import MmselectError, ModelNotAvailable

_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """True when the user asked for offline mode (read on every call, so tests can toggle the variables)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=None)
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def hub_available() -> bool:
    """Online mode and the hub endpoint answers a TCP connect (checked once per process)."""
    if hub_offline():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return _reachable(url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))


def _why_unavailable() -> str:
    return "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face hub is unreachable"


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that names a place on disk is a path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or Path(name).expanduser().exists()


def _cached_snapshot(repo_id: str, cache_dir: str | None = None) -> str | None:
    """The local snapshot folder of `repo_id` in the HF cache, or None (never touches the network)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - any failure here just means "not cached"
        return None


def _check_remote_code(folder: Path, name: str, trust_remote_code: bool) -> None:
    cfg = folder / "config.json"
    if trust_remote_code or not cfg.is_file():
        return
    try:
        auto_map = json.loads(cfg.read_text()).get("auto_map")
    except (OSError, ValueError):
        return
    if auto_map:
        raise MmselectError(
            f"model {name!r} needs custom code from its repository (config.json has auto_map); mmselect never runs "
            "it unless you pass --trust-remote-code")


def resolve_hf_model(name_or_path: str, *, flag: str, trust_remote_code: bool = False,
                     cache_dir: str | None = None) -> str:
    """A folder path (local, or the HF cache snapshot) or, online, the hub id, ready for `from_pretrained`.

    `flag` is the CLI option that takes a local folder for this model (named in the error when it is missing).
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        _check_remote_code(path, name, trust_remote_code)
        return str(path.resolve())
    if _looks_like_path(name):
        raise ModelNotAvailable(name, flag, f"no such folder: {path}")
    snapshot = _cached_snapshot(name, cache_dir)
    if snapshot and (Path(snapshot) / "config.json").is_file():
        _check_remote_code(Path(snapshot), name, trust_remote_code)
        return snapshot
    if not hub_available():
        raise ModelNotAvailable(name, flag, f"not in the HF cache and {_why_unavailable()}")
    return name


@contextlib.contextmanager
def loading(name: str, flag: str) -> Iterator[None]:
    """Turn a loader's missing-file / no-network failure into `ModelNotAvailable` naming the model and flag."""
    try:
        yield
    except (OSError, EnvironmentError) as exc:
        raise ModelNotAvailable(name, flag, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


# ---------------------------------------------------------------------------------------------------- open_clip
def _open_clip_cache_file(url: str, cache_dir: str | None) -> str | None:
    # open_clip's own URL cache: ~/.cache/clip/<basename> (see open_clip.pretrained.download_pretrained_from_url).
    target = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    return str(target) if target.is_file() else None


def _hf_cached_file(repo_id: str, filename: str, cache_dir: str | None) -> str | None:
    from huggingface_hub import hf_hub_download

    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for fname in names:
        try:
            return hf_hub_download(repo_id, fname, local_files_only=True, cache_dir=cache_dir)
        except Exception:  # noqa: BLE001 - not cached
            continue
    return None


def resolve_open_clip(model: str, pretrained: str | None = None, *, flag: str = "--clip-model",
                      pretrained_flag: str = "--clip-pretrained", cache_dir: str | None = None) -> tuple[str, str | None]:
    """`(model_name, pretrained)` for `open_clip.create_model_and_transforms` that loads without the network if it can.

    Accepted forms: `local-dir:DIR` (open_clip_config.json + weights), `hf-hub:ORG/REPO` (served from the HF cache as
    a local dir when present), or an architecture name with `pretrained` = a tag, a checkpoint file, or None /
    "none" / "random" for random init (tests and benchmarks only: the scores then carry no signal).
    """
    import open_clip

    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise ModelNotAvailable(model, flag, f"{folder} has no open_clip_config.json"
                                    if folder.is_dir() else f"no such folder: {folder}")
        return f"local-dir:{folder.resolve()}", None
    if model.startswith("hf-hub:"):
        repo = model[len("hf-hub:"):]
        snapshot = _cached_snapshot(repo, cache_dir)
        if snapshot and (Path(snapshot) / "open_clip_config.json").is_file():
            return f"local-dir:{snapshot}", None
        if not hub_available():
            raise ModelNotAvailable(model, flag, f"not in the HF cache and {_why_unavailable()}; "
                                    "pass local-dir:DIR instead")
        return model, None
    arch = model.replace("/", "-")
    if arch not in open_clip.list_models():
        raise MmselectError(f"unknown open_clip architecture {model!r}; use one of open_clip.list_models(), "
                            "local-dir:DIR, hf-hub:ORG/REPO, or hf:ID|DIR for a transformers CLIP")
    if pretrained is None or pretrained.lower() in {"none", "random", ""}:
        return arch, None
    file = Path(pretrained).expanduser()
    if file.is_file():
        return arch, str(file.resolve())
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        if _looks_like_path(pretrained):
            raise ModelNotAvailable(f"{arch} ({pretrained})", pretrained_flag, f"no such file: {file}")
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise MmselectError(f"{pretrained!r} is neither a checkpoint file nor a pretrained tag of {arch} "
                            f"(tags: {tags}); pass {pretrained_flag} FILE or a known tag")
    local = None
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        local = _hf_cached_file(repo, filename or "open_clip_pytorch_model.bin", cache_dir)
    if local is None and cfg.get("url"):
        local = _open_clip_cache_file(cfg["url"], cache_dir)
    if local is not None:
        return arch, local
    if not hub_available():
        raise ModelNotAvailable(f"{arch} pretrained {pretrained}", pretrained_flag,
                                f"weights not in the HF or open_clip cache and {_why_unavailable()}; "
                                f"pass a checkpoint FILE to {pretrained_flag} or local-dir:DIR to {flag}")
    return arch, pretrained


def resolve_sentence_transformer(name_or_path: str, *, flag: str = "--text-encoder") -> str:
    """A sentence-transformers model folder (local or cached), else the hub id online (same rules as HF models)."""
    return resolve_hf_model(name_or_path, flag=flag)


def model_fingerprint(model: str | Path) -> str:
    """Content hash of a local model folder's weights and config (the path alone is not enough: a cached base model
    that was rebuilt in place must not reuse labels or runs made with the old one). A hub id hashes as itself."""
    path = Path(model)
    if not path.is_dir():
        return str(model)
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + [path / "config.json"]:
        if f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def spec_fingerprint(model: str, pretrained: str | None) -> dict[str, Any]:
    """What identifies a CLIP for the score cache: the spec plus, for files on disk, their size and mtime, so that a
    retrained model in the same folder is not served stale scores."""
    out: dict[str, Any] = {"model": model, "pretrained": pretrained}
    paths = []
    for ref in (model, pretrained or ""):
        for prefix in ("local-dir:", "hf:"):
            if ref.startswith(prefix):
                ref = ref[len(prefix):]
        p = Path(ref).expanduser()
        if ref and p.exists():
            paths += sorted(p.glob("*")) if p.is_dir() else [p]
    out["files"] = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in paths if f.is_file()]
    return out
