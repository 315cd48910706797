"""Plot of loss, learning rate and validation metrics per epoch (`training_curves.png`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_training_curves(history: Sequence[dict], path: str | Path) -> Path:
    """Writes a three-panel PNG: loss (train/validation), learning rate, validation metrics."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    epochs = [entry["epoch"] for entry in history]

    def series(key):
        return [entry.get(key) for entry in history]

    figure, axes = pyplot.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(epochs, series("loss"), marker="o", label="train loss")
    if any(value is not None for value in series("val_loss")):
        axes[0].plot(epochs, series("val_loss"), marker="o", label="validation loss")
    axes[0].set_title("Loss")
    axes[1].plot(epochs, series("learning_rate"), marker="o", color="tab:green")
    axes[1].set_title("Learning rate (end of epoch)")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    metric_keys = [key for key in dict.fromkeys(k for entry in history for k in entry)
                   if key.startswith("val_") and key != "val_loss"] + ["accuracy"]
    for key in metric_keys:
        if any(value is not None for value in series(key)):
            name = key.replace("val_", "validation ") if key != "accuracy" else "train accuracy"
            axes[2].plot(epochs, series(key), marker="o", label=name)
    axes[2].set_title("Metrics")
    if not any(key in metric_keys for key in ("val_mse", "val_rmse", "val_mae")):
        axes[2].set_ylim(0.0, 1.05)
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.set_xticks(epochs)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return Path(path)
