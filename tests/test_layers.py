"""The layer rules that import-linter cannot see: what `import selector.core` and the CLI's parser load at run time,
and what the wheel ships. The import rules themselves are the contracts in .importlinter (`lint-imports`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _loaded(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.split()


def test_importing_the_floor_loads_no_other_layer_and_no_torch():
    tops = {m.split(".")[0] for m in _loaded("import selector.core")}
    assert not tops & {"torch", "open_clip", "transformers", "metrics", "vision", "finetune"}
    assert not [m for m in _loaded("import selector.core") if m.startswith(("selector.app", "selector.learned"))]


def test_the_cli_parser_loads_no_torch():
    loaded = _loaded("from selector.app.cli import build_parser\nbuild_parser()")
    assert "torch" not in loaded


def test_the_library_holds_no_demo_or_test_fixture_module():
    """The demo lives in selector.app.demo, test fixtures under tests/: none under metrics/ or finetune/. The one
    exception is public by design (issue 17, docs/architecture.md): `finetune.build_tiny_model`, offline test models
    of the VLM families, in finetune/tiny.py."""
    names = [str(p.relative_to(ROOT)) for d in ("metrics", "finetune") for p in (ROOT / d).rglob("*.py")]
    assert [n for n in names if Path(n).name.startswith(("demo", "tiny", "fake"))] == ["finetune/tiny.py"]
