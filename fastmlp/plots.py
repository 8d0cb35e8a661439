"""Pictures for the `fastmlp` command: training curves and confusion matrices.

matplotlib is an optional extra (`pip install 'fastmlp[cli]'`). It is imported
only here and only when a plot is asked for, and drawn with the Agg canvas
directly, so a user's pyplot backend and figures are left alone.
"""

import numpy as np


class PlotError(RuntimeError):
    """A plot that cannot be drawn (matplotlib missing, unwritable file)."""


def require_matplotlib():
    """Fail early, before any training, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("--plot needs matplotlib, which is not installed: "
                        "pip install matplotlib (or pip install 'fastmlp[cli]')") from None


def _figure(size):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as e:
        raise PlotError(f"{path}: cannot write the plot ({e})") from None
    return path


def training_curves(path, loss_curve, val_curve=None, score_name="validation score", title=None):
    """Loss per epoch (log scale when it spans decades) and the validation score."""
    loss = np.asarray(loss_curve, dtype=float)
    epochs = np.arange(1, len(loss) + 1)
    fig = _figure((7, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, loss, color="tab:blue", marker="o" if len(loss) <= 30 else None, ms=3,
            label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:blue")
    if len(loss) and loss.min() > 0 and loss.max() / loss.min() > 30:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    handles = ax.get_lines()
    val = None if val_curve is None else np.asarray(val_curve, dtype=float)
    if val is not None and len(val):
        ax2 = ax.twinx()
        ax2.plot(np.arange(1, len(val) + 1), val, color="tab:orange",
                 marker="s" if len(val) <= 30 else None, ms=3, label=score_name)
        ax2.set_ylabel(score_name, color="tab:orange")
        handles = handles + ax2.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    ax.set_title(title or "training")
    return _save(fig, path)


def confusion_matrix(path, matrix, labels, title="confusion matrix"):
    """Rows: true class; columns: predicted class; counts written in the cells."""
    m = np.asarray(matrix)
    k = len(labels)
    side = min(max(4.0, 0.5 * k + 2), 14)
    fig = _figure((side + 1, side))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(v) for v in labels], rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticks(ticks, [str(v) for v in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        top = m.max() if m.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if top and m[i, j] > top / 2 else "black")
    ax.set_title(title)
    return _save(fig, path)
