"""What differs between VLM families where no processor or config rule covers it: one small adapter per family,
registered by the config's `model_type`.

Everything else is generic (`finetune.data`): records render through the processor's chat template, every processor
output goes to the model's forward (token-aligned ones padded like the ids, image ones concatenated), and the
answer span is found by rendering. An adapter says which resolution limit the family's image processor takes
(Qwen's max_pixels, Idefics' longest edge); a model type without an adapter gets the generic one.

All six families take records with several images and records without one (a record a processor refuses anyway
is rejected with the processor's message, by the encoder).
"""
from __future__ import annotations

from dataclasses import dataclass

from selector.core.errors import SettingsError
from selector.core.registry import Registry

RESOLUTION_FLAGS = {"max_pixels": "--max-pixels", "image_longest_edge": "--image-longest-edge"}


@dataclass(frozen=True)
class Family:
    """A family's name and the resolution limits (`RESOLUTION_FLAGS` keys) its image processor takes."""

    name: str
    resolution: tuple[str, ...] = ()

    def limit_resolution(self, processor, *, max_pixels: int | None = None,
                         image_longest_edge: int | None = None) -> None:
        """Apply the resolution limits asked for; a limit the family's processor does not have is a clear error."""
        asked = {k: v for k, v in (("max_pixels", max_pixels), ("image_longest_edge", image_longest_edge))
                 if v is not None}
        for key, value in asked.items():
            if key not in self.resolution:
                takes = ", ".join(RESOLUTION_FLAGS[r] for r in self.resolution) or "no resolution flag"
                raise SettingsError(f"{RESOLUTION_FLAGS[key]}: {self.name}'s image processor has no such limit "
                                    f"(it takes {takes}); drop the flag")
            if value < 1:
                raise SettingsError(f"{RESOLUTION_FLAGS[key]} must be >= 1, got {value}")
            self._apply(processor.image_processor, key, value)  # defined by every adapter that lists a limit


@dataclass(frozen=True)
class QwenVL(Family):
    """Qwen2-VL / Qwen2.5-VL: dynamic resolution bounded by `max_pixels` (the image processor's size.longest_edge,
    in pixels); each 28x28 (patch x merge) block becomes one image token."""

    resolution: tuple[str, ...] = ("max_pixels",)

    def _apply(self, image_processor, key: str, value: int) -> None:
        size = dict(image_processor.size)
        if value < size.get("shortest_edge", 0):
            raise SettingsError(f"--max-pixels {value} is below the processor's min_pixels "
                                f"{size['shortest_edge']}")
        size["longest_edge"] = value
        image_processor.size = size


@dataclass(frozen=True)
class Idefics3(Family):
    """Idefics3 / SmolVLM: images are resized to `size.longest_edge` and split into tiles of the vision encoder's
    size; a smaller longest edge means fewer tiles and fewer image tokens."""

    resolution: tuple[str, ...] = ("image_longest_edge",)

    def _apply(self, image_processor, key: str, value: int) -> None:
        tile = image_processor.max_image_size["longest_edge"]
        if value < tile:
            raise SettingsError(f"--image-longest-edge {value} is below the vision encoder's tile size {tile}")
        image_processor.size = {"longest_edge": value}


GENERIC = Family("this model")

# model_type -> adapter; one line per family.
FAMILIES: Registry[Family] = Registry("model family")
FAMILIES.add("llava", Family("LLaVA-1.5"))
FAMILIES.add("llava_onevision", Family("LLaVA-OneVision"))
FAMILIES.add("qwen2_vl", QwenVL("Qwen2-VL"))
FAMILIES.add("qwen2_5_vl", QwenVL("Qwen2.5-VL"))
FAMILIES.add("idefics3", Idefics3("Idefics3"))
FAMILIES.add("smolvlm", Idefics3("SmolVLM"))
FAMILIES.add("gemma3", Family("Gemma 3"))


def family_of(model_or_config) -> Family:
    """The adapter for a model (or its config), the generic one for model types without one."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    return FAMILIES.get(model_type) if model_type in FAMILIES else GENERIC
