"""Clinical measures of a hemorrhage mask and hematoma expansion between two scans."""

from ichseg.clinical.expansion import compare_files, compare_scans, format_comparison
from ichseg.clinical.measures import (
    ABC2Result,
    CaseMeasures,
    ClassMeasures,
    ComponentsResult,
    IchScoreImaging,
    SubtypeMeasures,
    abc2,
    case_measures,
    components,
    hematoma_volume_ml,
    largest_component,
    slices_involved,
    subtype_measures,
)

__all__ = [
    "ABC2Result",
    "CaseMeasures",
    "ClassMeasures",
    "ComponentsResult",
    "IchScoreImaging",
    "SubtypeMeasures",
    "abc2",
    "case_measures",
    "compare_files",
    "compare_scans",
    "components",
    "format_comparison",
    "hematoma_volume_ml",
    "largest_component",
    "slices_involved",
    "subtype_measures",
]
