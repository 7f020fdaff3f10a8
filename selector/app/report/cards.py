"""Record cards for a report page: thumbnail(s), instruction, answer (truncated) and scores, as escaped HTML.

Records come from files nobody vetted, so everything here assumes hostility:
- every piece of record text (id, instruction, answer, image name) is truncated, stripped of control characters
  and HTML-escaped before it reaches the page;
- an image is opened only when `selector.core.images.path_problem` resolves it inside the images root as a regular
  file of bounded size, and decoded under Pillow's pixel cap; anything that fails (missing, outside the root, a
  bomb, truncated, not an image) becomes a placeholder with the reason, never an exception.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field

from selector.core.images import MAX_PIXELS, path_problem

THUMB = 96  # longest side of a thumbnail, pixels
INSTRUCTION_CHARS = 240
ANSWER_CHARS = 360
ID_CHARS = 80
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def clean_text(text, limit: int) -> str:
    """`text` as plain display text: at most `limit` characters (the rest counted), control characters as U+FFFD,
    and anything not encodable as UTF-8 (lone surrogates) replaced. Not yet HTML-escaped."""
    if text is None:
        return ""
    text = str(text)
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("\ufffd", text)
    return text + (f" … (+{extra:,} characters)" if extra > 0 else "")


def esc(text, limit: int = 200) -> str:
    """Record text, cleaned and escaped for HTML text and attribute values."""
    return html.escape(clean_text(text, limit), quote=True)


@dataclass(frozen=True)
class Thumb:
    """A thumbnail as a data URI, or the reason there is none (shown as a placeholder)."""

    name: str
    uri: str | None = None
    problem: str | None = None


def thumbnail(root: str | None, name: str, size: int = THUMB) -> Thumb:
    """A PNG thumbnail of the image `name` under `root`; a placeholder for anything that cannot be shown."""
    if root is None:
        return Thumb(name, problem="no images root")
    target, problem = path_problem(root, name)
    if problem:
        return Thumb(name, problem=problem)
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(target) as im:
                im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
                im.thumbnail((size, size))
                im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
                buf = io.BytesIO()
                im.save(buf, format="PNG", optimize=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Thumb(name, problem=f"more than {MAX_PIXELS} pixels")
    except MemoryError:
        return Thumb(name, problem="too large to decode")
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's problem, not the page's
        return Thumb(name, problem=f"cannot decode ({exc.__class__.__name__})")
    return Thumb(name, uri="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))


@dataclass(frozen=True)
class Card:
    """One record as shown on a page."""

    id: str
    instruction: str
    answer: str
    scores: dict[str, float | None] = field(default_factory=dict)
    thumbs: tuple[Thumb, ...] = ()
    note: str = ""  # e.g. "rank 201"


MAX_THUMBS = 4  # per card; a record naming more shows a count


def make_card(row: dict, scores: dict, root: str | None, note: str = "") -> Card:
    """A card from a record row (`id`, `instruction`, `answer`, `images`) and its scores."""
    images = list(row.get("images") or [])
    thumbs = tuple(thumbnail(root, name) for name in images[:MAX_THUMBS])
    if len(images) > MAX_THUMBS:
        note = (note + "; " if note else "") + f"{len(images)} images, {MAX_THUMBS} shown"
    return Card(str(row.get("id")), row.get("instruction") or "", row.get("answer") or "", dict(scores), thumbs,
                note)


def _number(v) -> str:
    if v is None or v != v:
        return "missing"
    return f"{v:.4g}"


def card_html(card: Card) -> str:
    thumbs = "".join(
        f'<img src="{t.uri}" alt="{esc(t.name)}" title="{esc(t.name)}">' if t.uri else
        f'<div class="ph" title="{esc(t.name)}">no image<br><small>{esc(t.problem, 120)}</small></div>'
        for t in card.thumbs)
    scores = "".join(f"<tr><th>{esc(k, 60)}</th><td>{_number(v)}</td></tr>" for k, v in card.scores.items())
    note = f'<div class="note">{esc(card.note)}</div>' if card.note else ""
    return (f'<div class="card" data-id="{esc(card.id, ID_CHARS)}">'
            f'<div class="thumbs">{thumbs}</div>'
            f'<div class="rid">{esc(card.id, ID_CHARS)}</div>{note}'
            f'<div class="q"><b>Q</b> {esc(card.instruction, INSTRUCTION_CHARS)}</div>'
            f'<div class="a"><b>A</b> {esc(card.answer, ANSWER_CHARS)}</div>'
            f'<table class="sc">{scores}</table></div>')


def cards_html(cards: list[Card]) -> str:
    if not cards:
        return '<p class="empty">no records</p>'
    return '<div class="cards">' + "".join(card_html(c) for c in cards) + "</div>"
