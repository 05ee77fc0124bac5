"""Label mappings: ``--labels`` text and data sets' own declarations onto ichseg's values."""

import numpy as np
import pytest

from ichseg.labels import (
    ONE_CLASS,
    SUBTYPES,
    LabelError,
    LabelMapping,
    declared_label_mapping,
    parse_label_mapping,
)

#: BHSD's own dataset.json labels (nnU-Net v1: value -> name), github.com/White65534/BHSD.
BHSD_LABELS = {"0": "background", "1": "epidural", "2": "intraparenchymal", "3": "intraventricular",
               "4": "subarachnoid", "5": "subdural"}


def test_a_source_whose_1_is_iph_is_mapped_onto_ichsegs_values():
    mapping = parse_label_mapping("IPH=1,SDH=2+3,background=9")
    assert mapping.scheme == SUBTYPES
    assert mapping.values == {0: 0, 1: 2, 2: 5, 3: 5, 9: 0}
    source = np.array([[[0, 1, 2], [3, 9, 1]]], dtype=np.float32)  # labels stored as floats happen
    mapped = mapping.apply(source)
    assert mapped.dtype == np.uint8
    assert mapped.tolist() == [[[0, SUBTYPES.value("IPH"), 5], [5, 0, 2]]]


def test_names_are_subtypes_by_abbreviation_or_full_name_in_any_case():
    assert parse_label_mapping(" intraparenchymal=1, sdh=2 ") == parse_label_mapping("IPH=1,SDH=2")
    assert parse_label_mapping("Epidural=4").values == {0: 0, 4: 1}


@pytest.mark.parametrize("text, values", [
    ("hemorrhage=255", {0: 0, 255: 1}),                         # a one-class source marking 255
    ("hemorrhage=1+2+3+4+5", {0: 0, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}),  # subtypes read as one class
])
def test_one_class_mappings(text, values):
    mapping = parse_label_mapping(text)
    assert mapping.scheme == ONE_CLASS and mapping.values == values


@pytest.mark.parametrize("text", ["IPH=1,SDH=2+3", "background=9,EDH=2", "hemorrhage=1+2"])
def test_text_round_trips(text):
    mapping = parse_label_mapping(text)
    assert parse_label_mapping(str(mapping)) == mapping


@pytest.mark.parametrize("text, message", [
    ("IPH", "expected NAME=VALUE[+VALUE...]"),
    ("IPH=", "expected NAME=VALUE[+VALUE...]"),
    ("IPH=1,", "expected NAME=VALUE[+VALUE...]"),
    ("IPH=x", "'x' is not a label value"),
    ("IPH=-1", "'-1' is not a label value"),
    ("edema=1", "unknown class 'edema'"),
    ("IPH=0", "value 0 is the background, not 'IPH'"),
    ("IPH=1,SDH=1", "value 1 is given to both 'IPH' and 'SDH'"),
    ("hemorrhage=1,IPH=2", "'hemorrhage' (one class) cannot be mixed with subtypes (IPH)"),
    ("background=3", "no hemorrhage class"),
])
def test_unusable_label_text_is_a_one_line_error(text, message):
    with pytest.raises(LabelError) as raised:
        parse_label_mapping(text)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"--labels {text!r}: ")


def test_declared_labels_of_nnunet_v2_v1_and_one_class():
    assert declared_label_mapping(SUBTYPES.to_dataset_json()) == LabelMapping.identity(SUBTYPES)
    assert declared_label_mapping(BHSD_LABELS) == LabelMapping.identity(SUBTYPES)
    # one class is hemorrhage whatever its name, as INSTANCE and PhysioNet name it
    assert declared_label_mapping({"background": 0, "bleed": 1}) == LabelMapping.identity(ONE_CLASS)
    assert declared_label_mapping({"Background": 0, "ICH": 255}).values == {0: 0, 255: 1}
    # subtypes under other values are mapped onto ichseg's
    assert declared_label_mapping({"background": 0, "SDH": 1, "IPH": 2}).values == {0: 0, 1: 5, 2: 2}


@pytest.mark.parametrize("labels, message", [
    ({"background": 0, "edema": 1, "bleed": 2}, "unknown class 'edema'"),
    ({"background": 0, "IPH": [1, 2], "SDH": 3}, "region-based labels are not supported"),
    ({"background": 0, "IPH": 1.5, "SDH": 3}, "not a whole number"),
    ({"background": 0}, "no hemorrhage class"),
])
def test_unusable_declarations_are_refused(labels, message):
    with pytest.raises(LabelError, match=message):
        declared_label_mapping(labels, "dataset.json: labels")


def test_undeclared_values_are_found_with_their_voxel_count():
    mapping = LabelMapping.identity(ONE_CLASS)
    values, voxels = mapping.undeclared_values(np.array([0, 1, 7, 7, 2.5, 1, 0]))
    assert values.tolist() == [2.5, 7.0] and voxels == 3
    assert mapping.undeclared_values(np.array([0, 1, 1]))[1] == 0


def test_a_mapping_keeps_zero_as_background_and_targets_the_schemes_classes():
    with pytest.raises(LabelError, match="keeps 0 as the background"):
        LabelMapping(ONE_CLASS, {0: 1, 1: 1})
    with pytest.raises(LabelError, match=r"label values \[2\] are not classes"):
        LabelMapping(ONE_CLASS, {0: 0, 1: 2})
