"""A trained model folder held in memory: CT in, segmentation out, no file written.

:class:`Segmenter` loads the networks once (:meth:`Segmenter.load`); :meth:`Segmenter.segment`
turns one CT (a :class:`CTImage`, a bare array with its spacing, or a file / DICOM folder) into a
:class:`~ichseg.segmentation.result.Segmentation` in the input's own geometry. A batch
(:mod:`ichseg.batch`) runs the same steps per case, so a mask in memory equals, voxel for voxel,
the mask ``ichseg predict`` writes.

Steps per case, each a function below so that every route (one process, a Ray cluster) calls the
same ones: :func:`read_case` (read, turn to the canonical orientation, preprocess once per
configuration), :meth:`Segmenter.ensemble_case` (every model's probability into running sums, the
ensemble rule), :func:`finish_case` (back to the input's orientation, the model folder's
postprocessing rule). A folder of several hemorrhage classes gives a class map: each model's class
probabilities are summed per class and the mask holds each voxel's class (DESIGN §15).
What passes between them is plain data (arrays, CPU tensors), which can
travel between processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ichseg.ensemble.info import EnsembleInfo
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import InputError
from ichseg.io.hu_checks import check_intensities
from ichseg.io.image import CTImage
from ichseg.io.inputs import CaseInput, ReadOptions
from ichseg.labels import ONE_CLASS, LabelScheme
from ichseg.model.folder import ModelFolder
from ichseg.segmentation.result import EnsembledCase, Segmentation
from ichseg.segmentation.settings import InferenceSettings

if TYPE_CHECKING:  # imported at run time only where used: they load torch and nnU-Net
    from ichseg.postprocessing import ClassPostprocessing, Postprocessing, Rule

    FolderRule = Rule | Postprocessing | ClassPostprocessing


class ModelOutputLike(Protocol):
    @property
    def probability(self) -> Any: ...


class ModelSetLike(Protocol):
    """What a :class:`Segmenter` needs of its models (``ichseg.model.networks.ModelSet``, or a fake).

    A model set may also have ``labels``, the :class:`~ichseg.labels.LabelScheme` of its classes
    (one class when it has none): with several hemorrhage classes each output's ``probability``
    holds the class probabilities (K, z, y, x), else P(hemorrhage) (z, y, x).
    """

    def __len__(self) -> int: ...

    def prepare(self, image: CTImage) -> Any: ...

    def probabilities(self, prepared: Any, /) -> Iterable[ModelOutputLike]: ...


class Segmenter:
    """A model set, an ensemble rule and a postprocessing rule, ready for many cases."""

    def __init__(self, models: ModelSetLike, ensemble: EnsembleSpec | None = None,
                 rule: FolderRule | None = None) -> None:
        self.models = models
        self.ensemble = ensemble or EnsembleSpec()
        self.ensemble.check_models(len(models))
        self.rule = rule

    @property
    def labels(self) -> LabelScheme:
        """The classes the models segment."""
        return getattr(self.models, "labels", ONE_CLASS)

    @classmethod
    def load(cls, model_dir: str | Path, settings: InferenceSettings = InferenceSettings(), *,
             device: str = "auto") -> Segmenter:
        """Load the folder's networks (those ``settings`` select) onto ``device``.

        The ensemble defaults to the recipe's; the folder's saved postprocessing rule applies
        unless ``settings.postprocess`` is false. The folder is checked as ``ichseg predict``
        checks it (complete, checkpoints whole, the ensemble fits the models) before torch loads.
        """
        folder = ModelFolder.open(model_dir)
        selected = settings.select(folder)
        folder.check_files(selected)
        ensemble = settings.ensemble_for(folder)
        ensemble.check_models(len(selected))
        rule = folder_rule(folder, settings.postprocess)

        from ichseg.engine import resolve_device
        from ichseg.model.networks import ModelSet

        return cls(ModelSet(folder, selected, resolve_device(device), settings), ensemble, rule)

    def segment(self, image: CTImage | np.ndarray | str | Path,
                spacing: Sequence[float] | None = None, *, series: str | None = None,
                accept_intensities: bool = False) -> Segmentation:
        """Segment one CT in memory.

        ``image`` is a :class:`CTImage` (it carries its geometry), a path (NIfTI file, DICOM series
        or study folder, DICOMDIR; ``series`` picks a SeriesInstanceUID, else ichseg's default series
        rules choose, thickness not deciding), or a bare array of Hounsfield units.
        A bare array is indexed (z, y, x) — slices first, then rows, then columns — with
        ``spacing`` (z, y, x) in mm, and is taken to lie in the canonical LPS orientation with an
        identity direction: x runs to the patient's left, y to posterior, z to superior. The
        result's arrays have the input's shape and orientation. A CT that cannot be in Hounsfield
        units is refused (:class:`ichseg.errors.IntensityError`) unless ``accept_intensities``.
        """
        source = as_image(image, spacing, series)
        warnings = check_intensities(source, accept=accept_intensities)
        canonical = source.reoriented()
        segmentation = finish_case(self.ensemble_case(source, canonical, self.models.prepare(canonical)), self.rule)
        return replace(segmentation, warnings=tuple(warnings))

    def ensemble_case(self, image: CTImage, canonical: CTImage, prepared: Any) -> EnsembledCase:
        """Every model on the device, combined from running sums into one mask of class values
        (a case's stage on the device, between :func:`read_case` and :func:`finish_case`)."""
        from ichseg.ensemble import EnsembleAccumulator, ensemble_mask

        labels = self.labels
        accumulator = EnsembleAccumulator(canonical.shape, n_classes=labels.n_classes)
        for output in self.models.probabilities(prepared):
            accumulator.add(output.probability)
        result = ensemble_mask(self.ensemble.strategy, accumulator, **self.ensemble.params())
        info = (EnsembleInfo(result.strategy, result.n_models, result.hr, result.rule, result.params)
                if result.n_models > 1 else EnsembleInfo.single_model())
        return EnsembledCase(image, canonical, _numpy(result.mask).astype(np.uint8),
                             _numpy(accumulator.votes).astype(np.uint8), info, labels)


def read_case(case: CaseInput, *, prepare: Callable[[CTImage], Any],
              read: ReadOptions = ReadOptions()) -> tuple[list[str], tuple[CTImage, CTImage, Any]]:
    """Lines for the user (the series chosen in a study and why, intensity warnings), and the
    input as loaded, the same in the canonical orientation, and that preprocessed by ``prepare``
    (a model set's, or its networks-free ``CasePreparer``'s)."""
    image, notes = case.load(read)
    warnings = notes + check_intensities(image, accept=read.accept_intensities)
    canonical = image.reoriented()
    return warnings, (image, canonical, prepare(canonical))


def finish_case(case: EnsembledCase, rule: FolderRule | None) -> Segmentation:
    """Back to the input's geometry, postprocessed by the folder's rules (on a class map: on any
    hemorrhage, then per class, :func:`ichseg.postprocessing.postprocess_classes`)."""
    from ichseg.postprocessing import (
        ClassPostprocessing,
        postprocess,
        postprocess_classes,
    )

    image = case.image
    mask = to_input_geometry(case.canonical, case.mask, image)
    votes = to_input_geometry(case.canonical, case.votes, image)
    if rule is None:
        return Segmentation(image, image.with_array(mask.astype(np.uint8)), image.with_array(votes),
                            case.ensemble, labels=case.labels)
    if case.labels.is_multiclass or isinstance(rule, ClassPostprocessing):
        done = postprocess_classes(mask, image.spacing, rule, case.labels, image)
    else:
        done = postprocess(mask, image.spacing, rule, image)
    space = done.intracranial.mask if done.intracranial is not None else None
    return Segmentation(image, image.with_array(done.mask.astype(np.uint8)), image.with_array(votes),
                        case.ensemble, done.report, intracranial=space, labels=case.labels)


def folder_rule(folder: ModelFolder, postprocess: bool = True) -> FolderRule | None:
    """The model folder's postprocessing when ``postprocess``: the one chosen for it (checked
    against the folder's classes), else its recipe's (None when neither has a rule)."""
    from ichseg.postprocessing import (
        ClassPostprocessing,
        Postprocessing,
        RuleError,
        load_rule,
    )

    if not postprocess:
        return None
    if folder.postprocessing_file.is_file():
        rule = load_rule(folder.postprocessing_file)
        if isinstance(rule, ClassPostprocessing) and rule.classes:
            try:
                rule.check_classes(folder.labels)
            except RuleError as error:
                raise RuleError(f"{folder.postprocessing_file}: {error}") from None
        return rule
    steps = Postprocessing.from_list(list(folder.recipe.postprocessing))
    return steps if steps.steps else None


def as_image(image: CTImage | np.ndarray | str | Path, spacing: Sequence[float] | None,
             series: str | None) -> CTImage:
    """A CT given as a :class:`CTImage`, a path (``series``: which DICOM series of a folder), or a
    bare (z, y, x) array of HU with its spacing (canonical orientation)."""
    if isinstance(image, CTImage):
        return image
    if isinstance(image, (str, Path)):
        return CaseInput(Path(image), series).load()[0]
    array = np.asarray(image)
    if array.ndim != 3:
        raise InputError(f"a CT array must be 3D (z, y, x), got shape {array.shape}")
    if spacing is None or len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"a bare CT array needs its spacing: three positive (z, y, x) sizes in mm, got {spacing!r}")
    return CTImage(array, (float(spacing[0]), float(spacing[1]), float(spacing[2])))


def to_input_geometry(canonical: CTImage, array: np.ndarray, original: CTImage) -> np.ndarray:
    """An array on the canonical grid, permuted and flipped back onto the input's grid."""
    back = canonical.with_array(array).reoriented(original.orientation)
    if back.shape != original.shape:
        raise RuntimeError(f"reorientation changed the shape {original.shape} -> {back.shape}")
    return back.array


def _numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
