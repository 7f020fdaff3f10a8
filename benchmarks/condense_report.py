"""Render the condensation benchmark JSONs as Markdown tables (pasted into benchmarks/results/condense.md).

    .venv/bin/python benchmarks/condense_report.py
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ["random", "herding", "kcenter", "forgetting", "dc", "dsa", "dm", "idm", "cafe", "full"]
NAMES = {"kcenter": "k-center", "dc": "DC", "dsa": "DSA", "dm": "DM", "idm": "IDM", "cafe": "CAFE",
         "full": "full data"}
MNIST = {"random": "64.9 / 95.1", "herding": "89.2 / 93.7", "kcenter": "89.3 / 84.4", "forgetting": "35.5 / 68.1",
         "dc": "91.7 / 97.4", "dsa": "88.7 / 97.8", "dm": "89.7 / 97.5", "idm": "– / –", "cafe": "93.1 / 97.2",
         "full": "99.6"}


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    rows = {(r["row"], r["ipc"]): r for r in data["rows"]}
    out = ["| method | ipc 1 | ipc 10 | iterations used (ipc 1 / 10) | condenser it/s (ipc 1 / 10) | "
           "published MNIST (ipc 1 / 10) |", "|---|---|---|---|---|---|"]
    for name in ORDER:
        if name == "full":
            r = rows.get(("full", 0))
            cell = f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} (n={r['n']})" if r else "—"
            out.append(f"| {NAMES[name]} | {cell} | {cell} | — | — | {MNIST[name]} |")
            continue
        cells, iters, speed = [], [], []
        for ipc in (1, 10):
            r = rows.get((name, ipc))
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} (n={r['n']})" if r else "—")
            if r and "settings" in r:
                s = r["settings"]
                extra = f" {tuple(s['outer_inner'])}" if "outer_inner" in s else ""
                iters.append(f"{s['iterations']}{extra}")
                speed.append(f"{sum(r['iterations_per_s']) / len(r['iterations_per_s']):.2f}")
        out.append(f"| {NAMES.get(name, name)} | {cells[0]} | {cells[1]} | {' / '.join(iters) or '—'} | "
                   f"{' / '.join(speed) or '—'} | {MNIST[name]} |")
    return "\n".join(out) + "\n\nSetup: " + json.dumps(data.get("setup", {}))


def speed(path: Path) -> str:
    data = json.loads(path.read_text())
    out = ["| DSA case | images | batched (s) | per-image loop (s) | ratio |", "|---|---|---|---|---|"]
    for case, r in data["dsa"].items():
        out.append(f"| {case} | {r['images']} | {r['batched_s']:.3f} | {r['per_image_s']:.2f} | "
                   f"{r['ratio']:.1f}x |")
    if "condensers" in data:
        out += ["", f"Setting: {json.dumps(data['setting'])}", "",
                "| method | iterations timed | it/s | s/it | per-class-loop it/s | vectorised speed-up |",
                "|---|---|---|---|---|---|"]
        for r in data["condensers"]:
            loop = f"{r['loop_it_per_s']:.3f}" if "loop_it_per_s" in r else "—"
            sp = f"{r['vectorised_speedup']:.2f}x" if "vectorised_speedup" in r else "—"
            if "vmap_it_per_s" in r:
                loop = "(this row is the loop)"
                sp = f"vmap form: {r['vmap_it_per_s']:.3f} it/s = {r['vmap_vs_loop']:.2f}x"
            out.append(f"| {r['method']} | {r['iterations']} | {r['it_per_s']:.3f} | {r['s_per_it']:.1f} | {loop} | "
                       f"{sp} |")
    out.append(f"\nload average at start / end: {data.get('load_average_at_start'):.1f} / "
               f"{data.get('load_average_at_end', float('nan')):.1f}")
    return "\n".join(out)


if __name__ == "__main__":
    for name, fn in (("condense_table.json", table), ("condense_speed.json", speed)):
        p = RESULTS / name
        if p.exists():
            print(fn(p), "\n")
