"""What a class map of hemorrhage types becomes: measures, case files, DICOM-SEG, SR, comparison.

The class map is a phantom's own (``generate_case(38, "tiny")``: intraparenchymal,
intraventricular and subarachnoid blood, each voxel typed by the bleed that made it) with an
epidural patch painted in, on the phantom written as a DICOM series. Volumes, slices and
components are checked against plain voxel counts and cc3d; codes against the table the README
lists; DICOM objects with dciodvfy. A one-class mask keeps exactly the files it always had.
"""

from __future__ import annotations

import argparse
import csv
import io
import json

import cc3d
import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from ichseg.cli import compare as compare_cli
from ichseg.clinical import case_measures, compare_files
from ichseg.clinical.measures import abc2
from ichseg.data.synth import generate_case
from ichseg.ensemble.info import EnsembleInfo
from ichseg.io import load_image
from ichseg.io.ctimage import CTImage
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.io.dicom_seg import build_dicom_seg
from ichseg.io.nifti import save_mask
from ichseg.labels import ONE_CLASS, SUBTYPES
from ichseg.palette import CLASS_COLORS
from ichseg.report.options import OutputOptions
from ichseg.report.outputs import (
    CSV_COLUMNS,
    write_batch_outputs,
    write_case_outputs,
    write_segmentation,
)
from ichseg.report.summary import CaseSummary
from ichseg.segmentation.result import Segmentation
from ichseg.serve.results import write_results
from scanner_series import Acquisition, dciodvfy_errors, voxel_centres

EDH, IPH, IVH, SAH, SDH = 1, 2, 3, 4, 5
#: SNOMED CT type of each class, as the README lists them with their sources.
TYPE_CODES = {EDH: "1386000", IPH: "449020009", IVH: "23276006", SAH: "21454007", SDH: "35486000"}
ENSEMBLE = EnsembleInfo("uncertainty", 3, 0.25, "HR<th: n>N2", {"th": 0.5})
VOLUME, SUM_OF_VOXELS, ELLIPSOID, RATIO = "118565006", "126030", "126029", "118586006"


def typed_map(shape: tuple[int, ...], phantom_map: np.ndarray) -> np.ndarray:
    """The phantom's class map with an epidural patch painted on voxels without blood."""
    class_map = phantom_map.copy()
    patch = np.zeros(shape, bool)
    patch[5:8, 10:14, 30:36] = True
    class_map[patch & (class_map == 0)] = EDH
    return class_map


@pytest.fixture(scope="module")
def typed_case(tmp_path_factory):
    """The phantom as a DICOM series, loaded back, and its class map on the loaded grid."""
    case = generate_case(38, "tiny")
    folder = write_ct_series(case.image, tmp_path_factory.mktemp("typed") / "ct", patient_id="PID-38")
    image = load_dicom_series(folder)
    assert np.array_equal(image.array, case.image.array)  # same grid: the phantom's map applies
    class_map = typed_map(image.shape, case.typed_label)
    assert set(np.unique(class_map)) == {0, EDH, IPH, IVH, SAH}
    return image, class_map


def segmentation(image: CTImage, class_map: np.ndarray, labels=SUBTYPES) -> Segmentation:
    mask = image.with_array(class_map.astype(np.uint8))
    return Segmentation(image, mask, mask.with_array(((class_map > 0) * 3).astype(np.uint8)), ENSEMBLE,
                        labels=labels)


def voxel_ml(image: CTImage) -> float:
    return float(np.prod(image.spacing)) / 1000.0


def test_each_type_is_measured_on_its_own_voxels(typed_case):
    image, class_map = typed_case
    measures = segmentation(image, class_map).measures()
    assert measures.subtypes is not None and list(measures.subtypes.classes) == ["EDH", "IPH", "IVH", "SAH", "SDH"]
    for value, name in enumerate(SUBTYPES.names[1:], start=1):
        voxels = class_map == value
        item = measures.subtypes.classes[name]
        assert item.value == value and item.voxel_count == int(voxels.sum())
        assert item.volume_ml == pytest.approx(voxels.sum() * voxel_ml(image), rel=1e-9)
        assert list(item.slices.involved) == [k for k in range(image.shape[0]) if voxels[k].any()]
        assert item.components.count == int(cc3d.connected_components(voxels, connectivity=26).max())
    # the whole case stays "any hemorrhage", exactly as one class measures it
    whole = {key: value for key, value in measures.to_json().items() if key != "subtypes"}
    assert whole == case_measures(class_map != 0, image.spacing).to_json()
    assert measures.subtypes.intraventricular_blood is True


def test_abc2_measures_the_largest_intraparenchymal_hematoma_only():
    spacing = (5.0, 0.5, 0.5)
    class_map = np.zeros((8, 60, 60), np.uint8)
    class_map[2:6, 10:30, 10:26] = IPH      # the large hematoma: 4 slices of 10 x 8 mm
    class_map[2:7, 10:30, 26:50] = SAH      # touching it, larger: not an IPH voxel
    class_map[1, 40:44, 40:44] = IPH        # a second, smaller intraparenchymal bleed
    measured = case_measures(class_map, spacing, SUBTYPES).subtypes.iph_abc2
    assert measured.measured_on == "largest intraparenchymal (IPH) component"
    # A: the rectangle's diagonal between the outer edge midpoints of its corner pixels
    assert measured.a_mm == pytest.approx(max(np.hypot(20 * 0.5, 15 * 0.5), np.hypot(19 * 0.5, 16 * 0.5)))
    assert measured.c_mm == pytest.approx(4 * 5.0)                        # 4 full slices
    assert measured.segmented_ml == pytest.approx(4 * 20 * 16 * 0.5 * 0.5 * 5.0 / 1000)
    assert measured.volume_ml == pytest.approx(measured.a_mm * measured.b_mm * measured.c_mm / 2000)
    alone = np.zeros_like(class_map)
    alone[2:6, 10:30, 10:26] = 1
    assert measured.volume_ml == pytest.approx(abc2(alone, spacing).volume_ml)


@pytest.mark.parametrize(("iph_voxels", "ivh", "large"), [(30_000, True, True), (29_999, False, False)])
def test_ich_score_imaging_items(iph_voxels, ivh, large):
    class_map = np.zeros(40 * 50 * 50, np.uint8)
    class_map[:iph_voxels] = IPH           # 1 mm³ voxels: 30 000 voxels are 30 mL
    if ivh:
        class_map[-5:] = IVH
    items = case_measures(class_map.reshape(40, 50, 50), (1.0, 1.0, 1.0), SUBTYPES).subtypes.ich_score_imaging
    assert items.iph_volume_ml == pytest.approx(iph_voxels / 1000)
    assert items.iph_volume_at_least_30_ml is large and items.intraventricular_blood is ivh
    assert items.to_json()["not_assessed"] == ["Glasgow Coma Scale", "age", "infratentorial origin"]


def test_case_files_of_a_class_map(typed_case, tmp_path):
    image, class_map = typed_case
    written = write_segmentation(segmentation(image, class_map), tmp_path)
    assert np.array_equal(load_image(written.files["mask"]).array, class_map)
    data = json.loads(written.files["json"].read_text())
    assert data["labels"] == {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}
    assert list(data).index("labels") == list(data).index("measures") - 1
    classes = data["measures"]["subtypes"]["classes"]
    assert {name: item["voxel_count"] for name, item in classes.items()} == {
        name: int((class_map == value).sum()) for value, name in enumerate(SUBTYPES.names) if value}
    assert CaseSummary.from_json(data).to_json() == data  # one (de)serialiser, lossless

    page = written.files["html"].read_text()
    for name in ("EDH", "IPH", "IVH", "SAH"):
        assert f"{name} (" in page and CLASS_COLORS[name] in page
    assert "Hemorrhage by type" in page and "ICH score: imaging items" in page
    assert f"{classes['SAH']['volume_ml']:.1f}" in page
    colours = {tuple(c) for c in np.asarray(Image.open(written.files["preview"]).convert("RGB")).reshape(-1, 3)}
    for name in ("EDH", "IPH", "IVH", "SAH"):
        assert tuple(int(CLASS_COLORS[name][i:i + 2], 16) for i in (1, 3, 5)) in colours, name
    assert (255, 0, 0) not in colours  # the one-class red is not used for types


def test_cases_csv_has_type_volumes_only_when_a_case_is_typed(typed_case, tmp_path):
    image, class_map = typed_case
    typed = write_segmentation(segmentation(image, class_map), tmp_path / "typed")
    plain = write_case_outputs(image, class_map != 0, tmp_path / "plain", OutputOptions(preview=False, html=False))
    rows = list(csv.DictReader(io.StringIO(write_batch_outputs([typed, plain], [], tmp_path)["csv"].read_text())))
    columns = list(rows[0])
    at = columns.index("volume_ml")
    assert columns[at + 1:at + 6] == ["EDH_volume_ml", "IPH_volume_ml", "IVH_volume_ml", "SAH_volume_ml",
                                      "SDH_volume_ml"]
    assert float(rows[0]["IPH_volume_ml"]) == pytest.approx((class_map == IPH).sum() * voxel_ml(image), rel=1e-5)
    assert rows[0]["SDH_volume_ml"] == "0" and rows[1]["IPH_volume_ml"] == ""
    alone = write_batch_outputs([plain], [], tmp_path / "alone")["csv"].read_text()
    assert alone.splitlines()[0] == ",".join(CSV_COLUMNS)


def seg_codes(ds: pydicom.Dataset) -> dict[int, tuple[str, str, str]]:
    return {int(s.SegmentNumber): (s.SegmentedPropertyTypeCodeSequence[0].CodeValue, s.TrackingID,
                                   s.SegmentedPropertyCategoryCodeSequence[0].CodeValue)
            for s in ds.SegmentSequence}


def test_dicom_seg_has_one_coded_segment_per_type_present(typed_case, tmp_path):
    image, class_map = typed_case
    path = tmp_path / "seg.dcm"
    build_dicom_seg(class_map, image, labels=SUBTYPES).save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    present = [EDH, IPH, IVH, SAH]
    assert seg_codes(ds) == {number: (TYPE_CODES[value], SUBTYPES.name(value), "49755003")
                             for number, value in enumerate(present, start=1)}
    assert all(s.AnatomicRegionSequence[0].CodeValue == "1101003" for s in ds.SegmentSequence)
    uids = image.metadata["dicom"]["SOPInstanceUIDs"]
    pixels = hd.seg.segread(path).get_pixels_by_source_instance(source_sop_instance_uids=uids,
                                                                 segment_numbers=[1, 2, 3, 4])
    for number, value in enumerate(present, start=1):
        assert np.array_equal(pixels[..., number - 1], class_map == value)
    referenced = {item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for item in ds.PerFrameFunctionalGroupsSequence}
    assert referenced == {uids[k] for k in range(image.shape[0]) if class_map[k].any()}
    assert dciodvfy_errors(path) == []


def test_typed_seg_on_a_tilted_series_covers_what_the_one_class_seg_covers(tmp_path):
    acquisition = Acquisition(tilt_deg=-16.0, steps_mm=(4.0,) * 10 + (7.0,) * 8)
    image = load_dicom_series(acquisition.write(tmp_path / "ct"))
    bleed = acquisition.in_bleed(voxel_centres(image))
    columns = np.indices(image.shape)[2]
    class_map = np.where(bleed, np.where(columns < np.median(columns[bleed]), IPH, SDH), 0)
    typed = build_dicom_seg(class_map.astype(np.uint8), image, labels=SUBTYPES)
    plain = build_dicom_seg(bleed, image)
    uids = image.metadata["dicom"]["SOPInstanceUIDs"]
    numbers = sorted(seg_codes(typed))
    union = typed.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers).any(-1)
    one = plain.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert len(numbers) == 2 and np.array_equal(union, one)


def sr_groups(sr: pydicom.Dataset) -> list[dict]:
    """Each measurement group: tracking UID, finding code, referenced segment, (code, method, value)s."""
    found = []
    for container in sr.ContentSequence:
        for group in getattr(container, "ContentSequence", []):
            if group.ValueType != "CONTAINER":
                continue
            item = {"uid": None, "finding": None, "segment": None, "numbers": []}
            for entry in group.ContentSequence:
                concept = entry.ConceptNameCodeSequence[0].CodeValue
                if entry.ValueType == "UIDREF" and concept == "112040":
                    item["uid"] = entry.UID
                elif entry.ValueType == "CODE" and concept == "121071":
                    item["finding"] = entry.ConceptCodeSequence[0].CodeValue
                elif entry.ValueType == "IMAGE":
                    item["segment"] = int(entry.ReferencedSOPSequence[0].ReferencedSegmentNumber)
                elif entry.ValueType == "NUM":
                    methods = [m.ConceptCodeSequence[0].CodeValue for m in getattr(entry, "ContentSequence", [])]
                    item["numbers"].append((concept, methods[0] if methods else None,
                                            float(entry.MeasuredValueSequence[0].NumericValue)))
            found.append(item)
    return found


def test_pacs_results_report_each_type(typed_case, tmp_path):
    image, class_map = typed_case
    result = segmentation(image, class_map)
    paths = write_results(result, tmp_path / "out")
    for path in paths.values():
        assert dciodvfy_errors(path) == [], path.name
    seg, sc, sr = (pydicom.dcmread(paths[kind]) for kind in ("seg", "sc", "sr"))
    measures = result.measures()
    tracking = {int(s.SegmentNumber): (s.TrackingID, s.TrackingUID) for s in seg.SegmentSequence}
    groups = sr_groups(sr)
    assert len(groups) == len(tracking) + 1
    for group, (number, (name, uid)) in zip(groups[:-1], sorted(tracking.items()), strict=True):
        assert (group["segment"], group["uid"], group["finding"]) == (number, uid, TYPE_CODES[SUBTYPES.value(name)])
        volume = measures.subtypes.classes[name].volume_ml
        assert (VOLUME, SUM_OF_VOXELS, pytest.approx(volume, abs=1e-3)) in group["numbers"]
        has_abc2 = any(method == ELLIPSOID for _, method, _ in group["numbers"])
        assert has_abc2 is (name == "IPH")
    everything = groups[-1]
    assert everything["segment"] is None and everything["finding"] == "1386000"
    assert (VOLUME, SUM_OF_VOXELS, pytest.approx(measures.volume_ml, abs=1e-3)) in everything["numbers"]
    assert (RATIO, None, 0.25) in everything["numbers"]
    assert "IPH " in sc.ImageComments and "SAH " in sc.ImageComments and "IPH ABC/2" in sc.ImageComments


def test_a_one_class_segmentation_writes_exactly_the_one_class_files(typed_case, tmp_path):
    image, class_map = typed_case
    written = write_segmentation(segmentation(image, class_map != 0, labels=ONE_CLASS), tmp_path)
    data = json.loads(written.files["json"].read_text())
    assert list(data) == ["case", "ichseg_version", "created", "input", "measures", "uncertainty",
                          "postprocessing", "reference", "outputs"]
    assert list(data["measures"]) == ["volume_ml", "voxel_count", "abc2", "components", "slices", "spacing_mm"]
    assert data["measures"] == case_measures(class_map != 0, image.spacing).to_json()
    assert set(np.unique(load_image(written.files["mask"]).array)) == {0, 1}
    ds = pydicom.dcmread(written.files["dicom_seg"])
    assert len(ds.SegmentSequence) == 1
    segment = ds.SegmentSequence[0]
    assert (segment.SegmentLabel, segment.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            segment.AnatomicRegionSequence[0].CodeValue) == ("Intracranial hemorrhage", "1386000", "12738006")
    assert "TrackingUID" not in segment and list(segment.RecommendedDisplayCIELabValue) == [34865, 53482, 50166]
    assert "Hemorrhage by type" not in written.files["html"].read_text()
    colours = {tuple(c) for c in np.asarray(Image.open(written.files["preview"]).convert("RGB")).reshape(-1, 3)}
    assert (255, 0, 0) in colours
    groups = sr_groups(pydicom.dcmread(write_results(segmentation(image, class_map != 0, ONE_CLASS),
                                                     tmp_path / "pacs")["sr"]))
    assert [(g["segment"], g["finding"]) for g in groups] == [(1, "1386000")]


def run_compare(argv):
    parser = argparse.ArgumentParser(prog="ichseg")
    compare_cli.register(parser.add_subparsers())
    args = parser.parse_args(["compare", *argv])
    return args.run(args)


def test_compare_per_type_from_case_jsons_and_masks(typed_case, tmp_path, capsys):
    image, class_map = typed_case
    grown = class_map.copy()
    grown[(class_map == 0) & (np.roll(class_map, 1, axis=2) == IPH)] = IPH  # the IPH grows by a rim
    before = write_segmentation(segmentation(image, class_map), tmp_path / "before").files
    after = write_segmentation(segmentation(image, grown), tmp_path / "after").files
    growth_ml = ((grown == IPH).sum() - (class_map == IPH).sum()) * voxel_ml(image)
    for baseline, followup in ((before["json"], after["json"]), (before["mask"], after["mask"])):
        result = compare_files(baseline, followup)
        assert result["by_type"]["IPH"]["growth_ml"] == pytest.approx(growth_ml, rel=1e-6)
        assert result["by_type"]["SAH"]["growth_ml"] == pytest.approx(0.0, abs=1e-9)
        assert result["growth_ml"] == pytest.approx(growth_ml, rel=1e-6)
    assert run_compare([str(before["json"]), str(after["json"])]) == 0
    text = capsys.readouterr().out
    assert "by type" in text and f"{growth_ml:+9.2f} mL" in text
    plain = save_mask(image, class_map != 0, tmp_path / "plain.nii.gz")
    assert compare_files(plain, after["json"])["by_type"] is None
    assert "by_type" not in compare_files(plain, plain)
    only_edh = save_mask(image, class_map == EDH, tmp_path / "edh.nii.gz")  # 0 and 1: one class unless told
    assert "by_type" not in compare_files(only_edh, only_edh)
    told = compare_files(only_edh, after["mask"], subtypes=True)["by_type"]
    assert told["EDH"]["baseline_ml"] == pytest.approx((class_map == EDH).sum() * voxel_ml(image))


def test_a_typed_case_without_hemorrhage_still_gives_valid_files(typed_case, tmp_path):
    image, _ = typed_case
    empty = np.zeros(image.shape, np.uint8)
    written = write_segmentation(segmentation(image, empty), tmp_path)
    subtypes = json.loads(written.files["json"].read_text())["measures"]["subtypes"]
    assert all(item["voxel_count"] == 0 for item in subtypes["classes"].values())
    assert subtypes["iph_abc2"]["slice_index"] is None
    assert subtypes["ich_score_imaging"]["intraventricular_blood"] is False
    assert "No intraparenchymal hemorrhage." in written.files["html"].read_text()
    paths = write_results(segmentation(image, empty), tmp_path / "pacs")
    seg = pydicom.dcmread(paths["seg"])
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence] == ["1386000"]
    assert [(g["segment"], g["finding"]) for g in sr_groups(pydicom.dcmread(paths["sr"]))] == [(1, "1386000")]
    for path in paths.values():
        assert dciodvfy_errors(path) == [], path.name


def test_a_mask_value_outside_the_classes_is_refused_before_writing(typed_case, tmp_path):
    image, class_map = typed_case
    wrong = class_map.copy()
    wrong[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"values \[7\] are not classes"):
        write_case_outputs(image, wrong, tmp_path, labels=SUBTYPES)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
