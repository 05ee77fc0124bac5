"""INSTANCE-compatible evaluation: per-case metrics, folder evaluation, summaries, ranking, plots.

The numbers are those the INSTANCE 2022 organizers compute (DeepMind's surface-distance
algorithm, see :mod:`ichseg.metrics.surface`): Dice, HD (maximum surface distance, mm), HD95, NSD
at 0.42 mm, RVD, and volumes in mL; with them the false-positive volume (mL) and components.
Label maps of hemorrhage types are scored for any hemorrhage and per class
(:mod:`ichseg.metrics.classes`). Arrays are (z, y, x) with spacing (z, y, x) in mm.
"""

from ichseg.metrics.case import (
    DEFAULT_NSD_TOLERANCE_MM,
    METRICS,
    Metric,
    case_metrics,
    metrics_by_class,
)
from ichseg.metrics.classes import (
    ANY,
    EvaluationLabels,
    find_label_scheme,
    parse_labels_option,
)
from ichseg.metrics.evaluation import (
    Comparison,
    Evaluation,
    compare_folders,
    evaluate_folders,
    match_cases,
)
from ichseg.metrics.ranking import RANKING_METRICS, rank_class, rank_methods
from ichseg.metrics.summary import rows_to_csv, summarize, summary_table
from ichseg.metrics.writing import compare_methods, evaluate

__all__ = [
    "ANY",
    "DEFAULT_NSD_TOLERANCE_MM",
    "METRICS",
    "RANKING_METRICS",
    "Comparison",
    "Evaluation",
    "EvaluationLabels",
    "Metric",
    "bland_altman_plot",
    "case_metrics",
    "compare_folders",
    "compare_methods",
    "dice_boxplot",
    "dice_boxplots_by_class",
    "evaluate",
    "evaluate_folders",
    "find_label_scheme",
    "match_cases",
    "metrics_by_class",
    "parse_labels_option",
    "rank_class",
    "rank_methods",
    "rows_to_csv",
    "summarize",
    "summary_table",
]


def __getattr__(name: str):
    """Plots load matplotlib, so they are imported only when asked for."""
    if name in ("bland_altman_plot", "dice_boxplot", "dice_boxplots_by_class"):
        from ichseg.metrics import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'ichseg.metrics' has no attribute {name!r}")
