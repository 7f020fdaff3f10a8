"""`python -m finetune ...` and `accelerate launch finetune ...` (the folder run as a script)."""
import sys
from pathlib import Path

if not __package__:
    # Run as `python finetune` / `accelerate launch finetune`: the folder itself is sys.path[0], where module names
    # like `config` or `data` would shadow real packages. Put the project root there instead.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

from selector.app.finetune_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
