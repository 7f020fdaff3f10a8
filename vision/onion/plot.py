"""Plot of one onion run: training accuracy per epoch and the swap epochs of the example level."""
from __future__ import annotations

from pathlib import Path

from selector.core.io import atomic_path


def plot_training(result, path: Path) -> Path:
    """Training accuracy and loss per epoch, with a dashed line at every example-level swap; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] + 1 for h in result.history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_accuracy"] for h in result.history], marker="o", label="train accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train accuracy (active set, fraction)")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["train_loss"] for h in result.history], color="tab:red", alpha=0.6, label="train loss")
    ax2.set_ylabel("train loss (cross-entropy)")
    for s in result.swaps:
        ax.axvline(s.epoch + 0.5, color="grey", linestyle="--", linewidth=0.8)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    if result.swaps:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8, label="example-level swap"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False, fontsize=8)
    levels = ",".join(result.config.levels) or "dense"
    ax.set_title(f"onion ({levels}): test acc {result.test_accuracy:.3f}, {result.throughput:.0f} img/s")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
