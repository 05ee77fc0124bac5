"""nnU-Net's preprocessing of one case for prediction, without nnU-Net's preprocessor class.

``DefaultPreprocessor`` lives in a module that imports nnU-Net's training data loaders (seconds of
start-up prediction does not use). :func:`preprocess_case` is its ``run_case_npy`` for an image
without a segmentation, step for step with nnU-Net's own functions: transpose, crop to the
non-zero region, normalisation by the plans' scheme, resampling to the plans' spacing with the
configuration's ``resampling_fn_data``. Plans that name another preprocessor class go through
that class (tested: equal to ``DefaultPreprocessor.run_case_npy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

DEFAULT_PREPROCESSOR = "DefaultPreprocessor"


def preprocess_case(array: np.ndarray, spacing: tuple[float, ...], plans_manager: Any,
                    configuration_manager: Any, dataset_json: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """A (z, y, x) volume as the configuration's network sees it (c, z', y', x'), and the
    properties that lead back (nnU-Net's names: ``shape_before_cropping``,
    ``bbox_used_for_cropping``, ``shape_after_cropping_and_before_resampling``, ``spacing``)."""
    data = np.array(array, dtype=np.float32)[None]  # a copy: normalisation works in place on a cropped view
    properties: dict[str, Any] = {"spacing": list(spacing)}
    if configuration_manager.preprocessor_name != DEFAULT_PREPROCESSOR:
        preprocessor = configuration_manager.preprocessor_class(verbose=False)
        data, _, properties = preprocessor.run_case_npy(data, None, properties, plans_manager,
                                                        configuration_manager, dataset_json)
        return data, properties
    transpose = plans_manager.transpose_forward
    data = data.transpose([0, *(axis + 1 for axis in transpose)])
    original_spacing = [spacing[axis] for axis in transpose]
    properties["shape_before_cropping"] = data.shape[1:]
    data, mask, bbox = crop_to_nonzero(data, None)
    properties["bbox_used_for_cropping"] = bbox
    properties["shape_after_cropping_and_before_resampling"] = data.shape[1:]
    target_spacing = list(configuration_manager.spacing)
    if len(target_spacing) < len(data.shape[1:]):  # 2d: the slices keep their spacing
        target_spacing = [original_spacing[0], *target_spacing]
    new_shape = compute_new_shape(data.shape[1:], original_spacing, target_spacing)
    intensities = plans_manager.foreground_intensity_properties_per_channel
    for channel in range(data.shape[0]):
        normaliser = _normaliser_class(configuration_manager.normalization_schemes[channel])(
            use_mask_for_norm=configuration_manager.use_mask_for_norm[channel],
            intensityproperties=intensities[str(channel)])
        data[channel] = normaliser.run(data[channel], mask[0])
    data = configuration_manager.resampling_fn_data(data, new_shape, original_spacing, target_spacing)
    return data, properties


def _normaliser_class(scheme: str) -> type:
    """nnU-Net's normalisation class of a plans' scheme name (CTNormalization for CT)."""
    from nnunetv2.preprocessing.normalization import default_normalization_schemes

    found = getattr(default_normalization_schemes, scheme, None)
    if found is None:  # a scheme outside nnU-Net's defaults: its own lookup
        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        found = recursive_find_python_class(f"{nnunetv2.__path__[0]}/preprocessing/normalization", scheme,
                                            "nnunetv2.preprocessing.normalization")
    if found is None:
        raise RuntimeError(f"unknown normalisation scheme {scheme!r}")
    return found
