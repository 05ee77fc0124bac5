"""PNG previews: slice choice, windowing, aspect ratio, red contours, atomic writes and errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ichseg.errors import InputError, OutputExistsError
from ichseg.io.image import CTImage
from ichseg.report.preview import (
    DPI,
    PANEL_INCHES,
    key_slice,
    montage_slices,
    save_case_grid,
    save_montage,
)

PANEL_PX = round(PANEL_INCHES * DPI)


def uniform_image(value: float = 40.0, shape=(5, 40, 40), spacing=(5.0, 0.5, 0.5)) -> CTImage:
    return CTImage(np.full(shape, value, np.int16), spacing)


def square_mask(shape=(5, 40, 40), z: int = 2) -> np.ndarray:
    """A 10 x 10 square in the upper left quarter of slice ``z`` (rows 6-15, columns 4-13)."""
    mask = np.zeros(shape, np.uint8)
    mask[z, 6:16, 4:14] = 1
    return mask


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture.convert("RGB")).astype(int)


def red_pixels(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)


def test_montage_slices_follow_the_mask_or_span_the_volume():
    mask = np.zeros((20, 4, 4), bool)
    mask[3:9, 1, 1] = True
    assert montage_slices(mask, 20, max_slices=12) == [3, 4, 5, 6, 7, 8]
    assert montage_slices(mask, 20, max_slices=3) == [3, 5, 8]  # positions 0, 2.5 (to even: 2), 5
    assert montage_slices(None, 20, max_slices=5) == [0, 5, 10, 14, 19]
    assert montage_slices(np.zeros((4, 2, 2)), 4, max_slices=12) == [0, 1, 2, 3]


def test_key_slice_is_the_largest_mask_area_or_the_middle():
    mask = np.zeros((7, 5, 5), bool)
    mask[2, :2, :2] = True   # 4 voxels
    mask[5, :3, :3] = True   # 9 voxels
    assert key_slice(mask, 7) == 5
    assert key_slice(np.zeros((7, 5, 5)), 7) == 3
    assert key_slice(None, 8) == 4


def test_contour_is_red_around_the_mask_only(tmp_path):
    image, mask = uniform_image(), square_mask()
    path = save_montage(image, mask, tmp_path / "m.png", slices=[2])
    rgb = read_rgb(path)
    assert rgb.shape[:2] == (PANEL_PX, PANEL_PX)  # one square panel filling the figure
    scale = PANEL_PX / 40
    rows, columns = np.nonzero(red_pixels(rgb))
    assert len(rows) > 4 * 10 * scale  # a closed outline around the square
    # the outline runs along the square's edges (rows 6-15, columns 4-13), within a pixel
    assert 5 * scale <= rows.min() <= 7 * scale and 15 * scale <= rows.max() <= 17 * scale
    assert 3 * scale <= columns.min() <= 5 * scale and 13 * scale <= columns.max() <= 15 * scale
    inner = rgb[round(9 * scale):round(13 * scale), round(7 * scale):round(11 * scale)]
    assert not red_pixels(inner).any()  # outlined, not filled
    plain = read_rgb(save_montage(image, None, tmp_path / "plain.png", slices=[2]))
    assert not red_pixels(plain).any()


@pytest.mark.parametrize("window, grey", [((40.0, 80.0), 0.5), ((20.0, 80.0), 0.75), ((100.0, 40.0), 0.0)])
def test_window_maps_hu_to_grey(tmp_path, window, grey):
    rgb = read_rgb(save_montage(uniform_image(40.0), None, tmp_path / "w.png", slices=[0], window=window))
    centre = rgb[PANEL_PX // 2, PANEL_PX // 2]
    assert centre[0] == centre[1] == centre[2]
    assert abs(centre[0] - 255 * grey) <= 2


def test_panel_keeps_the_physical_aspect_ratio(tmp_path):
    # 40 rows of 1.0 mm over 40 columns of 0.5 mm: twice as tall as wide on screen
    image = uniform_image(spacing=(5.0, 1.0, 0.5))
    rgb = read_rgb(save_montage(image, None, tmp_path / "a.png", slices=[0]))
    assert rgb.shape[:2] == (2 * PANEL_PX, PANEL_PX)


def test_default_montage_shows_the_mask_slices_with_a_title(tmp_path):
    mask = np.zeros((5, 40, 40), np.uint8)
    mask[1:4, 10:20, 10:20] = 1
    path = save_montage(uniform_image(), mask, tmp_path / "t.png", title="case 7")
    rgb = read_rgb(path)
    assert rgb.shape[1] == 3 * PANEL_PX and rgb.shape[0] > PANEL_PX  # three panels and a title row
    assert red_pixels(rgb).any()


def test_case_grid_has_one_captioned_panel_per_case(tmp_path):
    panels = [(uniform_image(), square_mask(z=i % 5), f"case {i}") for i in range(5)]
    panels.append((uniform_image(), None, "no mask"))
    rgb = read_rgb(save_case_grid(panels, tmp_path / "grid.png"))
    assert rgb.shape[1] == 4 * PANEL_PX  # at most four columns
    assert 2 * PANEL_PX < rgb.shape[0] < 3 * PANEL_PX  # two rows and their captions
    assert red_pixels(rgb).any()


def test_case_grid_shows_the_slice_asked_for(tmp_path):
    panel = (uniform_image(), square_mask(z=3), "case")
    assert not red_pixels(read_rgb(save_case_grid([panel], tmp_path / "one.png", slices=[1]))).any()
    assert red_pixels(read_rgb(save_case_grid([panel], tmp_path / "three.png", slices=[3]))).any()
    assert red_pixels(read_rgb(save_case_grid([panel], tmp_path / "key.png", slices=[None]))).any()
    with pytest.raises(InputError, match="slice 5 outside 0..4"):
        save_case_grid([panel], tmp_path / "x.png", slices=[5])
    with pytest.raises(InputError, match="2 slices for 1 panels"):
        save_case_grid([panel], tmp_path / "x.png", slices=[1, 2])
    assert not (tmp_path / "x.png").exists()


def test_existing_png_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        save_montage(uniform_image(), None, path)
    with pytest.raises(OutputExistsError):
        save_case_grid([(uniform_image(), None, "x")], path)
    assert path.read_bytes() == b"old"
    save_montage(uniform_image(), None, path, overwrite=True)
    assert read_rgb(path).size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary files left


def test_bad_requests_are_refused(tmp_path):
    image = uniform_image()
    with pytest.raises(InputError, match="does not match"):
        save_montage(image, np.zeros((5, 40, 39)), tmp_path / "x.png")
    with pytest.raises(InputError, match="slice 5 outside 0..4"):
        save_montage(image, None, tmp_path / "x.png", slices=[1, 5])
    with pytest.raises(InputError, match="no cases"):
        save_case_grid([], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
