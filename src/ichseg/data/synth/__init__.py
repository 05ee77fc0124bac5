"""Synthetic non-contrast head CTs with hemorrhage labels, for demos, tests and benchmarks.

A phantom is a head in patient coordinates built from smooth shapes: scalp, a skull of dense
tables around diploe with a skull base, subarachnoid CSF, a folded cortical ribbon over white
matter, the interhemispheric and Sylvian fissures, deep grey nuclei, ventricles, cisterns and the
posterior fossa, and zero to three of the five hemorrhage types at their usual sites. Around them
are the tissues of a real head that read like blood (40-90 HU) and are not: temporal and neck
muscles, scalp vessels, the dural venous sinuses, falx and tentorium, the choroid plexus,
partial volume of the inner table and beam hardening at the skull base; and the orbits, the
paranasal sinuses and the mastoid air cells (:mod:`~ichseg.data.synth.lookalikes`). A case may
have a craniectomy or a burr hole (:mod:`~ichseg.data.synth.defects`). Each slice
is rendered on sub-slices (and, for the small sizes, sub-pixels) and averaged, so edges blur
across thick slices the way they do on a 5 mm CT; the label marks the voxels at least half filled
with blood. Everything follows from one seed, and case ``i`` of a data set is seeded from
``(seed, i)``, so it is the same whatever the number of cases asked for.

The volume is rendered one output slice at a time on coordinate grids (no loops over voxels), so
a ``tiny`` case takes a fraction of a second and a ``full`` 512 x 512 case a few seconds.

The parts, in the order a case is made: :mod:`~ichseg.data.synth.vocabulary` (tissues, types,
sizes), :mod:`~ichseg.data.synth.anatomy` (the head model), :mod:`~ichseg.data.synth.slab` and
:mod:`~ichseg.data.synth.tissues` (samples of one slice and the anatomy drawn on them, with
:mod:`~ichseg.data.synth.dura`, :mod:`~ichseg.data.synth.extracranial` and
:mod:`~ichseg.data.synth.artifacts`),
:mod:`~ichseg.data.synth.lesions`, :mod:`~ichseg.data.synth.render`,
:mod:`~ichseg.data.synth.case` (one seed, one phantom) and :mod:`~ichseg.data.synth.dataset`.
"""

from ichseg.data.synth.case import case_seed, generate_case
from ichseg.data.synth.dataset import CSV_COLUMNS, CaseRecord, synthesize
from ichseg.data.synth.vocabulary import (
    BLOOD_LIKE_TISSUES,
    HEMORRHAGE_TYPES,
    INTRACRANIAL_TISSUES,
    MAX_COVERAGE_MM,
    NO_HEMORRHAGE_RATE,
    SIZES,
    SKULL_DEFECTS,
    TYPE_ABBREVIATIONS,
    SizeSpec,
    SyntheticCase,
    Tissue,
)

__all__ = ["BLOOD_LIKE_TISSUES", "CSV_COLUMNS", "HEMORRHAGE_TYPES", "INTRACRANIAL_TISSUES",
           "MAX_COVERAGE_MM", "NO_HEMORRHAGE_RATE", "SIZES", "SKULL_DEFECTS", "TYPE_ABBREVIATIONS",
           "CaseRecord", "SizeSpec", "SyntheticCase", "Tissue", "case_seed", "generate_case",
           "synthesize"]
