"""Run presets for `prune`, `condense` and `onion`: `paper` (the papers' settings) or `fast` (a CPU-sized run).

`paper` changes nothing: every setting keeps its method's paper default. `fast` shrinks what dominates a CPU run
(image size, network width, proxy epochs, condensation iterations, evaluation networks and epochs) so a first try on
digits finishes in minutes; BENCHMARKS.md records what it costs in accuracy. The default is `paper` on a GPU and
`fast` on a CPU (`default_preset`). A setting the user gives explicitly always wins over the preset (`apply`).

Keys are the settings' names as the commands' jobs take them (`image_size`, `width`, `iterations`, ...).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["PRESETS", "FAST", "default_preset", "preset_settings", "apply", "describe"]

PRESETS = ("paper", "fast")

# Per command. condense's `iterations` is per method (the papers' schedules differ by 20x).
FAST: dict[str, dict[str, Any]] = {
    "prune": {"image_size": 16, "width": 32, "epochs": 10, "runs": 2, "probes": 2},
    "condense": {"image_size": 16, "width": 32, "batch_real": 64,
                 "iterations": {"dm": 100, "idm": 100, "dc": 20, "dsa": 20, "cafe": 20},
                 "eval_models": 2, "eval_epochs": 100},
    # onion keeps the paper's 20 epochs: 5 cost 27 points on digits (benchmarks/preset_cost.py), while the smaller
    # ViT on 16 x 16 images trains 3x faster per epoch and reaches the paper size's accuracy or better.
    "onion": {"image_size": 16, "dim": 64, "depth": 4, "heads": 2},
}


def default_preset(device: str | None = None) -> str:
    """`paper` when the run goes to a GPU (`device`, or CUDA present when it is None), else `fast`."""
    if device is not None:
        return "paper" if device.lower().startswith(("cuda", "mps")) else "fast"
    import torch

    return "paper" if torch.cuda.is_available() else "fast"


def preset_settings(command: str, preset: str, method: str | None = None) -> dict[str, Any]:
    """The settings `preset` sets for `command` (empty for `paper`); per-method values resolved for `method`."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if preset == "paper":
        return {}
    out = {}
    for key, value in FAST[command].items():
        if isinstance(value, dict):
            if method is None or method.lower() not in value:
                continue
            value = value[method.lower()]
        out[key] = value
    return out


def apply(command: str, preset: str, given: Mapping[str, Any], method: str | None = None,
          accepted: set[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, from_preset): `given` (None = not set) with the preset filling what the user left unset.

    `accepted` limits the preset to the settings the method uses (a ranker without a proxy has no `epochs`);
    `from_preset` is what the preset actually set, for the start-of-run line and the report."""
    settings = {k: v for k, v in given.items() if v is not None}
    from_preset = {k: v for k, v in preset_settings(command, preset, method).items()
                   if k not in settings and (accepted is None or k in accepted)}
    return {**settings, **from_preset}, from_preset


def describe(command: str) -> str:
    """The `fast` settings of `command` as one line for --help."""
    parts = []
    for key, value in FAST[command].items():
        if isinstance(value, dict):
            value = "/".join(f"{v} ({m})" for m, v in value.items())
        parts.append(f"{key.replace('_', '-')} {value}")
    return ", ".join(parts)
