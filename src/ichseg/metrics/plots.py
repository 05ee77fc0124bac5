"""PNG plots of evaluation results: Dice per case by method (and by class), and Bland–Altman of
volumes.

Figures are built with matplotlib's object interface (no pyplot state, no display needed) and
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.atomic import atomic_file

Row = Mapping[str, Any]


def dice_boxplot(results: Mapping[str, Sequence[Row]], path: str | os.PathLike,
                 overwrite: bool = False) -> Path:
    """Box plot of per-case Dice for each method, every case drawn as a point over its box."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.4 * len(results) + 2.0), 4.5), layout="constrained")
    _draw_dice_boxes(figure.add_subplot(), results, "Dice per case")
    return _save(figure, path, overwrite)


def dice_boxplots_by_class(results: Mapping[str, Mapping[str, Sequence[Row]]],
                           path: str | os.PathLike, overwrite: bool = False) -> Path:
    """One panel per class (``results[class][method]``: the rows where the class was scored),
    each as :func:`dice_boxplot` draws it, on a common Dice axis."""
    from matplotlib.figure import Figure

    n_methods = max(len(by_method) for by_method in results.values())
    width = max(3.0, 1.1 * n_methods + 1.5)
    figure = Figure(figsize=(width * len(results), 4.5), layout="constrained")
    panels = figure.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for axes, (name, by_method) in zip(panels, results.items(), strict=True):
        scored = sum(len(rows) for rows in by_method.values())
        _draw_dice_boxes(axes, by_method, f"{name} ({scored} scored)")
    return _save(figure, path, overwrite)


def _draw_dice_boxes(axes, results: Mapping[str, Sequence[Row]], title: str) -> None:
    methods = list(results)
    values = [np.array([float(row["dice"]) for row in results[m]]) for m in methods]
    axes.boxplot(values, showfliers=False, widths=0.5)
    axes.set_xticks(range(1, len(methods) + 1), labels=methods,
                    rotation=20 if len(methods) > 3 else 0)
    jitter = np.random.default_rng(0)
    for position, dice in enumerate(values, start=1):
        axes.scatter(position + jitter.uniform(-0.12, 0.12, dice.size), dice, s=12, alpha=0.6,
                     color="tab:blue", zorder=3)
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("Dice")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)


def bland_altman_plot(results: Mapping[str, Sequence[Row]], path: str | os.PathLike,
                      overwrite: bool = False) -> Path:
    """Bland–Altman plot of predicted against reference volume (mL), one panel per method.

    x: mean of the two volumes; y: predicted minus reference. Lines: the mean difference (bias)
    and the limits of agreement, bias ± 1.96 sd of the differences.
    """
    from matplotlib.figure import Figure

    methods = list(results)
    figure = Figure(figsize=(4.5 * len(methods), 4.2), layout="constrained")
    panels = figure.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for axes, method in zip(panels, methods, strict=True):
        pred = np.array([float(row["volume_pred_ml"]) for row in results[method]])
        ref = np.array([float(row["volume_ref_ml"]) for row in results[method]])
        difference = pred - ref
        axes.scatter((pred + ref) / 2, difference, s=14, alpha=0.7, color="tab:blue")
        if difference.size:
            bias = float(np.mean(difference))
            axes.axhline(bias, color="black", linewidth=1, label=f"bias {bias:.2f} mL")
            if difference.size > 1:
                spread = 1.96 * float(np.std(difference, ddof=1))
                for limit in (bias - spread, bias + spread):
                    axes.axhline(limit, color="gray", linestyle="--", linewidth=1)
                axes.plot([], [], color="gray", linestyle="--",
                          label=f"±1.96 sd ({spread:.2f} mL)")
            axes.legend(loc="best", fontsize="small")
        axes.axhline(0, color="lightgray", linewidth=0.8, zorder=0)
        axes.set_xlabel("mean of predicted and reference volume (mL)")
        axes.set_title(method if len(methods) > 1 else "Bland–Altman: hemorrhage volume")
    panels[0].set_ylabel("predicted − reference volume (mL)")
    return _save(figure, path, overwrite)


def _save(figure, path: str | os.PathLike, overwrite: bool) -> Path:
    with atomic_file(path, overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return Path(path)

