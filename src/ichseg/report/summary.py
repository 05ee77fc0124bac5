"""A case's summary: what its JSON holds, as one typed value with one (de)serialiser.

The JSON file, the HTML report, the batch CSV, the DICOM node's captions and a resumed batch all
read the same :class:`CaseSummary`, so none of them spells the JSON's keys.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ichseg.clinical.measures import CaseMeasures
from ichseg.ensemble.info import EnsembleInfo
from ichseg.labels import ONE_CLASS, LabelScheme
from ichseg.version import __version__


@dataclass(frozen=True)
class ReferenceComparison:
    """The case against a reference mask given with it: Dice, the reference's volume and the
    segmented volume minus it."""

    dice: float
    volume_ml: float
    difference_ml: float

    def to_json(self) -> dict[str, float]:
        return {"dice": self.dice, "volume_ml": self.volume_ml, "difference_ml": self.difference_ml}


@dataclass(frozen=True)
class CaseSummary:
    """One case: measures, how the models were combined (``uncertainty``), what postprocessing
    removed, the input's description, the comparison with a reference, the files written (kind
    -> file name) and, only when asked for, the patient identifiers.

    ``labels`` names the mask's classes. The JSON says them (``"labels": {"background": 0,
    "EDH": 1, ...}``, before the measures, which then hold ``subtypes``) only when they are not
    :data:`~ichseg.labels.ONE_CLASS`: a one-class case's JSON has exactly the keys it always had.
    """

    case: str
    measures: CaseMeasures
    input: Mapping[str, Any] = field(default_factory=dict)
    uncertainty: EnsembleInfo | None = None
    postprocessing: Mapping[str, Any] | None = None
    reference: ReferenceComparison | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    identifiers: Mapping[str, str] | None = None
    labels: LabelScheme = ONE_CLASS
    ichseg_version: str = __version__
    created: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "case": self.case,
            "ichseg_version": self.ichseg_version,
            "created": self.created,
            "input": dict(self.input),
            **({"labels": self.labels.to_dataset_json()} if self.labels != ONE_CLASS else {}),
            "measures": self.measures.to_json(),
            "uncertainty": self.uncertainty.to_json() if self.uncertainty is not None else None,
            "postprocessing": dict(self.postprocessing) if self.postprocessing is not None else None,
            "reference": self.reference.to_json() if self.reference is not None else None,
            "outputs": dict(self.outputs),
        }
        if self.identifiers is not None:
            data["identifiers"] = dict(self.identifiers)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseSummary:
        uncertainty, reference, labels = data.get("uncertainty"), data.get("reference"), data.get("labels")
        return cls(
            case=str(data["case"]),
            measures=CaseMeasures.from_json(data["measures"]),
            input=dict(data.get("input") or {}),
            uncertainty=EnsembleInfo.from_json(uncertainty) if uncertainty else None,
            postprocessing=data.get("postprocessing"),
            reference=ReferenceComparison(**reference) if reference else None,
            outputs=dict(data.get("outputs") or {}),
            identifiers=data.get("identifiers"),
            labels=LabelScheme.from_dataset_json(labels) if labels else ONE_CLASS,
            ichseg_version=str(data.get("ichseg_version", "")),
            created=str(data.get("created", "")),
        )
