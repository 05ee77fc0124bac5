"""The colour each hemorrhage class is drawn in, the same in the preview, the report and the DICOM-SEG.

One class (INSTANCE) keeps ichseg's red contour. The subtypes take colours of Okabe and Ito's
palette for colour-blind readers (Okabe M, Ito K, *Color Universal Design*, 2008), chosen to stand
out on a grey CT in the brain window: its yellow is left out (it vanishes against bone, where
epidural and subdural blood lie) and so is its dark blue (it vanishes against the dark brain).
A class ichseg does not know takes the next unused colour of the palette.
"""

from __future__ import annotations

from collections.abc import Mapping

from ichseg.labels import HEMORRHAGE

#: Colours by class name (hex sRGB).
CLASS_COLORS: Mapping[str, str] = {
    HEMORRHAGE: "#ff0000",
    "EDH": "#e69f00",  # orange
    "IPH": "#d55e00",  # vermillion
    "IVH": "#56b4e9",  # sky blue
    "SAH": "#009e73",  # bluish green
    "SDH": "#cc79a7",  # reddish purple
}
#: Okabe and Ito's remaining colours, for classes not named above.
SPARE_COLORS = ("#f0e442", "#0072b2", "#000000")


def class_color(name: str, names: tuple[str, ...] = ()) -> str:
    """The colour of class ``name``; an unknown class takes a spare colour by its place among the
    unknown ones of ``names`` (the scheme's class names)."""
    if name in CLASS_COLORS:
        return CLASS_COLORS[name]
    unknown = [other for other in names if other not in CLASS_COLORS]
    place = unknown.index(name) if name in unknown else 0
    return SPARE_COLORS[place % len(SPARE_COLORS)]
