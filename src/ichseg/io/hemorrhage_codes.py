"""The coded concept of each hemorrhage class: what a DICOM-SEG segment is and what an SR finding is.

Every code was checked against a published listing, not taken from code (public repositories
give these hemorrhages conflicting SNOMED CT codes). Segmented property category: SCT 49755003
*Morphologically abnormal structure* (DICOM PS3.16 CID 7150). Anatomic region of the subtypes:
SCT 1101003 *Intracranial* (CID 4); one class keeps SCT 12738006 *Brain*, as ichseg always wrote.
Segmented property types (SNOMED CT; listing: the NLM Value Set Authority Center expansions of
the value sets *Hemorrhagic Stroke* 2.16.840.1.113883.3.117.1.7.1.212 and *Closed Head and Facial
Trauma* 2.16.840.1.113883.3.3157.4026, SNOMED CT US edition 2021-09 and 2023-09):

- hemorrhage (one class): 1386000 *Intracranial hemorrhage (disorder)*
- IPH: 449020009 *Intraparenchymal hemorrhage of brain (disorder)*
- IVH: 23276006 *Ventricular hemorrhage (disorder)* (the cerebral ventricles: it sits among
  the stroke codes beside 425957003 *Non-traumatic intracerebral ventricular hemorrhage*)
- SAH: 21454007 *Subarachnoid intracranial hemorrhage (disorder)*
- SDH: 35486000 *Subdural intracranial hemorrhage (disorder)*
- EDH: no listing available here gives a general epidural (extradural) hemorrhage concept (only
  traumatic ones such as 315048006 *Traumatic extradural hematoma without open intracranial
  wound*, which would assert a cause), so an EDH segment is typed as the general 1386000
  *Intracranial hemorrhage* and named by its label.

A class ichseg does not know is typed as 1386000 too and labelled with its own name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ichseg.labels import HEMORRHAGE

#: Segmentation property category of every class (CID 7150).
CATEGORY = codes.cid7150.MorphologicallyAbnormalStructure
#: Where one-class hemorrhage lies (as ichseg has always written it), and where any subtype lies.
BRAIN = codes.SCT.Brain
INTRACRANIAL = codes.SCT.Intracranial
INTRACRANIAL_HEMORRHAGE = codes.SCT.IntracranialHemorrhage


@dataclass(frozen=True)
class ClassCoding:
    """A class as DICOM names it: the segment's label, its type (the SR's finding type too) and
    where it lies."""

    label: str
    finding: Code
    region: Code = INTRACRANIAL


CODINGS = {
    HEMORRHAGE: ClassCoding("Intracranial hemorrhage", INTRACRANIAL_HEMORRHAGE, BRAIN),
    "EDH": ClassCoding("Epidural hemorrhage (EDH)", INTRACRANIAL_HEMORRHAGE),
    "IPH": ClassCoding("Intraparenchymal hemorrhage (IPH)",
                       Code("449020009", "SCT", "Intraparenchymal hemorrhage of brain")),
    "IVH": ClassCoding("Intraventricular hemorrhage (IVH)", Code("23276006", "SCT", "Ventricular hemorrhage")),
    "SAH": ClassCoding("Subarachnoid hemorrhage (SAH)",
                       Code("21454007", "SCT", "Subarachnoid intracranial hemorrhage")),
    "SDH": ClassCoding("Subdural hemorrhage (SDH)", Code("35486000", "SCT", "Subdural intracranial hemorrhage")),
}


def class_coding(name: str) -> ClassCoding:
    """The coding of class ``name``; a class ichseg does not know is intracranial hemorrhage."""
    return CODINGS.get(name) or ClassCoding(name, INTRACRANIAL_HEMORRHAGE)
