"""Label schemes: nnU-Net's dataset.json labels in and out, and the two conventions."""

import pytest

from ichseg.labels import ONE_CLASS, SUBTYPES, LabelError, LabelScheme


def test_the_subtype_convention_is_bhsds():
    assert SUBTYPES.to_dataset_json() == {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}
    assert SUBTYPES.is_multiclass and not ONE_CLASS.is_multiclass
    assert SUBTYPES.hemorrhage_values == (1, 2, 3, 4, 5) and ONE_CLASS.hemorrhage_values == (1,)
    assert SUBTYPES.value("IVH") == 3 and SUBTYPES.name(5) == "SDH"


def test_dataset_json_labels_round_trip_in_any_key_order():
    labels = {"SDH": 5, "background": 0, "EDH": 1, "IVH": 3, "IPH": 2, "SAH": 4}
    assert LabelScheme.from_dataset_json(labels) == SUBTYPES
    assert LabelScheme.from_dataset_json(ONE_CLASS.to_dataset_json()) == ONE_CLASS


@pytest.mark.parametrize("labels", [
    {"background": 0, "a": 2},                 # a hole
    {"background": 0, "a": 1, "b": 1},        # a shared value
    {"background": 0, "a": [1, 2]},           # a region
    {"background": 1, "a": 0},                # background not first
    {"background": 0},                        # no class
])
def test_unusable_labels_are_refused(labels):
    with pytest.raises(LabelError):
        LabelScheme.from_dataset_json(labels)
