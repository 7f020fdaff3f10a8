"""Screenshots of report pages for the README, taken in headless Chromium (the same checker the browser test uses:
a page with a console error or a broken image is refused, not photographed).

    python scripts/report_screenshots.py REPORT/index.html --out docs/analyze-page.png --section metrics

takes the page from the top (or from the top of `--section`) to `--height` CSS pixels, scaled to `--width` and
reduced to a 256-colour palette so it stays small in the repository.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.browser import check_page  # noqa: E402


def screenshot(page: Path, out: Path, *, top: int = 0, height: int = 1400, width: int = 900) -> Path:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.png"
        result = check_page(page, full, full_page=True)
        if result.errors or result.broken_images:
            raise SystemExit(f"{page}: not photographed: {result.errors or result.broken_images}")
        with Image.open(full) as im:
            im = im.convert("RGB").crop((0, top, im.width, min(im.height, top + height)))
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
            im.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def section_top(page: Path, section: str) -> int:
    """The y offset (CSS pixels) of `<section id=SECTION>` in the checker's 1280-pixel-wide window."""
    import json

    expr = f"document.getElementById({json.dumps(section)}).getBoundingClientRect().top + window.scrollY"
    return int(check_page(page, evaluate=expr).value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--section", help="start at this section's top (e.g. metrics, extremes)")
    p.add_argument("--height", type=int, default=1400, help="CSS pixels of page to show (default 1400)")
    p.add_argument("--width", type=int, default=900, help="width of the PNG (default 900)")
    args = p.parse_args()
    top = section_top(args.page, args.section) if args.section else 0
    out = screenshot(args.page, args.out, top=top, height=args.height, width=args.width)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
