"""A trained model folder held in memory: CT in, segmentation out, no file written.

:class:`Segmenter` loads the networks once (:meth:`Segmenter.load`); :meth:`Segmenter.segment`
turns one CT (a :class:`CTImage`, a bare array with its spacing, or a file / DICOM folder) into a
:class:`Segmentation` in the input's own geometry; :meth:`Segmenter.predict_folder` runs many cases
with reading, the networks and writing overlapped, and writes each case's files. Both go through
the same steps, so a mask in memory equals, voxel for voxel, the mask ``ichseg predict`` writes.

Steps per case: read, turn to the canonical orientation, preprocess once per configuration (the
model set), every model's probability into running sums, the ensemble rule, back to the input's
orientation, the model folder's postprocessing rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import IchsegError, InputError
from ichseg.io.image import CTImage, case_name, load_image
from ichseg.io.inputs import InputScan, scan_inputs
from ichseg.io.intensity import check_intensities
from ichseg.progress import make_progress
from ichseg.report.options import OutputOptions
from ichseg.run_manifest import Run, open_run, run_manifest

if TYPE_CHECKING:  # imported at run time only where used: they load torch and nnU-Net
    from ichseg.models import ModelFolder
    from ichseg.postprocessing.rules import Rule
    from ichseg.report.outputs import CaseOutputs

#: How many segmented cases may wait for the background writer before prediction waits for it.
_WRITES_AHEAD = 2

#: The ensemble description of a case segmented by one model: there is nothing to combine, so
#: no half ratio is reported.
SINGLE_MODEL = "single model"


class ModelOutputLike(Protocol):
    probability: Any


class ModelSetLike(Protocol):
    """What a :class:`Segmenter` needs of its models (``ichseg.model_set.ModelSet``, or a fake)."""

    def __len__(self) -> int: ...

    def prepare(self, image: CTImage) -> Any: ...

    def probabilities(self, prepared: Any) -> Iterable[ModelOutputLike]: ...


@dataclass(frozen=True)
class Segmentation:
    """One case's result, in the geometry of the input as given.

    ``mask`` holds 0/1 (uint8) and ``votes`` the number of models marking each voxel (0..C);
    ``ensemble`` describes how the models were combined (strategy, C, HR, branch of the rule) and
    ``postprocessing`` what the model folder's component rule removed (None without a rule);
    ``warnings`` what the intensity checks found unusual yet possible.
    """

    image: CTImage
    mask: CTImage
    votes: CTImage
    ensemble: dict[str, Any]
    postprocessing: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def volume_ml(self) -> float:
        return float(np.count_nonzero(self.mask.array)) * self.mask.voxel_volume_ml

    def measures(self) -> dict[str, Any]:
        """Volume, ABC/2, components and slices (as in the case's JSON)."""
        from ichseg.clinical.measures import case_measures

        return case_measures(self.mask.array, self.mask.spacing)


@dataclass
class PredictionResult:
    """A batch: ``cases`` written now, ``skipped`` found complete (resume), ``failures`` as
    ``(entry name, one-line message)``, ``warnings`` one line each (unusual intensities)."""

    output_dir: Path
    cases: list[CaseOutputs] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[CaseOutputs] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EnsembledCase:
    """One case's ensemble on the canonical grid, before it goes back to the input's geometry."""

    image: CTImage
    canonical: CTImage
    mask: np.ndarray
    votes: np.ndarray
    ensemble: dict[str, Any]


class Segmenter:
    """A model set, an ensemble rule and a postprocessing rule, ready for many cases."""

    def __init__(self, models: ModelSetLike, ensemble: EnsembleSpec | None = None,
                 rule: Rule | None = None) -> None:
        self.models = models
        self.ensemble = ensemble or EnsembleSpec()
        self.ensemble.check_models(len(models))
        self.rule = rule

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str = "auto", groups: Sequence[str] | None = None,
             folds: Sequence[int | str] | None = None, ensemble: EnsembleSpec | None = None,
             mirroring: bool = True, step_size: float = 0.5, postprocess: bool = True,
             verbose: bool = False) -> Segmenter:
        """Load the folder's networks (all, or those of ``groups`` and ``folds``) onto ``device``.

        ``ensemble`` defaults to the recipe's; the folder's saved postprocessing rule is applied
        unless ``postprocess`` is false. Everything that can be checked without torch is checked
        before the networks load.
        """
        from ichseg.models import ModelFolder

        folder = ModelFolder.open(model_dir)
        selected = folder.select(groups, folds)
        spec = ensemble or EnsembleSpec.from_dict(folder.recipe.ensemble)
        spec.check_models(len(selected))
        rule = folder_rule(folder, postprocess)

        from ichseg.engine import resolve_device
        from ichseg.model_set import ModelSet

        models = ModelSet(folder, selected, resolve_device(device), use_mirroring=mirroring,
                          tile_step_size=step_size, verbose=verbose)
        return cls(models, spec, rule)

    def segment(self, image: CTImage | np.ndarray | str | Path,
                spacing: Sequence[float] | None = None, *, series: str | None = None,
                accept_intensities: bool = False) -> Segmentation:
        """Segment one CT in memory.

        ``image`` is a :class:`CTImage` (it carries its geometry), a path (NIfTI file or DICOM
        series folder; ``series`` picks a SeriesInstanceUID), or a bare array of Hounsfield units.
        A bare array is indexed (z, y, x) — slices first, then rows, then columns — with
        ``spacing`` (z, y, x) in mm, and is taken to lie in the canonical LPS orientation with an
        identity direction: x runs to the patient's left, y to posterior, z to superior. The
        result's arrays have the input's shape and orientation. A CT that cannot be in Hounsfield
        units is refused (:class:`ichseg.errors.IntensityError`) unless ``accept_intensities``.
        """
        source = _as_image(image, spacing, series)
        warnings = check_intensities(source, accept=accept_intensities)
        canonical = source.reoriented()
        segmentation = finish_case(self.ensemble_case(source, canonical, self.models.prepare(canonical)), self.rule)
        return replace(segmentation, warnings=tuple(warnings))

    def predict_folder(self, inputs: str | Path | Sequence[Path] | InputScan, output_dir: str | Path,
                       options: OutputOptions = OutputOptions(), *, series: str | None = None,
                       progress: bool = True, run: Run | None = None,
                       accept_intensities: bool = False, reading: ReadAhead | None = None) -> PredictionResult:
        """Segment every case of ``inputs`` (see :func:`ichseg.io.inputs.scan_inputs`) and write its
        files into ``output_dir``; a case that fails is listed and the others go on.

        ``run`` (:func:`ichseg.run_manifest.open_run`) is the checked output folder, with the
        cases a resumed batch skips; by default the folder must hold no results unless
        ``options.overwrite``. Nothing is written unless a case succeeds, and the batch's CSV
        and overview cover every case, skipped ones included. A CT that is not in HU is refused
        unless ``accept_intensities`` (:func:`ichseg.io.intensity.check_intensities`).
        The next case is read while the networks work on this one (``reading``: that reading,
        started earlier, with the same settings); outputs are written in the background, with at
        most a few finished cases waiting (bounded memory).
        """
        scan = _as_scan(inputs)
        if run is None:
            run = open_run(output_dir, run_manifest(None, self.ensemble, options, {"series": series}),
                           overwrite=options.overwrite)
        result, cases, options = start_batch(scan, run, options)
        if reading is None:
            reading = ReadAhead(cases, partial(read_case, prepare=self.models.prepare, series=series,
                                               accept_intensities=accept_intensities))
        elif reading.cases != cases:
            raise ValueError("reading: not the cases this batch has to segment (see pending_cases)")
        with make_progress(progress) as bar, ThreadPoolExecutor(1, thread_name_prefix="ichseg-write") as writer:
            task = bar.add_task(f"Predicting with {len(self.models)} model(s)", total=len(cases))
            writing: list[tuple[Path, Future[CaseOutputs]]] = []
            for path, reading_case in reading:
                try:
                    warnings, loaded = reading_case.result()
                    ensembled = self.ensemble_case(*loaded)
                except IchsegError as error:
                    result.failures.append((path.name, str(error)))
                    bar.advance(task)
                    continue
                result.warnings.extend(warnings)
                run.start()
                written = writer.submit(write_case, ensembled, self.rule, run.output_dir, options)
                written.add_done_callback(lambda _: bar.advance(task))
                writing.append((path, written))
                if len(writing) > _WRITES_AHEAD:  # cases waiting to be written hold memory: keep them few
                    wait([writing[-_WRITES_AHEAD - 1][1]])
            for path, written in writing:
                try:
                    result.cases.append(written.result())
                except IchsegError as error:
                    result.failures.append((path.name, str(error)))
        return end_batch(result, run)

    def ensemble_case(self, image: CTImage, canonical: CTImage, prepared: Any) -> EnsembledCase:
        """Every model on the device, combined from running sums into one mask (a case's stage
        on the device, between :func:`read_case` and :func:`write_case`)."""
        from ichseg.ensemble import EnsembleAccumulator, ensemble_mask

        accumulator = EnsembleAccumulator(canonical.shape)
        for output in self.models.probabilities(prepared):
            accumulator.add(output.probability)
        result = ensemble_mask(self.ensemble.strategy, accumulator, **self.ensemble.params())
        description = result.as_dict() if result.n_models > 1 else {"strategy": SINGLE_MODEL, "n_models": 1}
        return EnsembledCase(image, canonical, _numpy(result.mask).astype(np.uint8),
                             _numpy(accumulator.votes).astype(np.uint8), description)


# A case's stages, in the order they run. Every route (the local threads, a Ray cluster) calls
# these, so each writes the same files; what passes between them is plain data (arrays, dicts,
# CPU tensors), which can travel between processes.

def read_case(path: Path, *, prepare: Callable[[CTImage], Any], series: str | None = None,
              accept_intensities: bool = False, allow_gaps: bool = False) -> tuple[list[str], tuple[CTImage, CTImage, Any]]:
    """Intensity warnings, and the input as loaded, the same in the canonical orientation, and
    that preprocessed by ``prepare`` (a model set's, or its networks-free ``CasePreparer``'s).
    ``allow_gaps``: a DICOM series' missing slices are interpolated, not refused."""
    image = _as_image(path, None, series, allow_gaps)
    warnings = check_intensities(image, accept=accept_intensities)
    canonical = image.reoriented()
    return warnings, (image, canonical, prepare(canonical))


def finish_case(case: EnsembledCase, rule: Rule | None) -> Segmentation:
    """Back to the input's geometry, postprocessed by the folder's rule."""
    from ichseg.postprocessing import apply_rule

    image = case.image
    mask = to_input_geometry(case.canonical, case.mask, image)
    votes = to_input_geometry(case.canonical, case.votes, image)
    postprocessing = None
    if rule is not None:
        mask, postprocessing = apply_rule(mask, image.spacing, rule)
    return Segmentation(image, image.with_array(mask.astype(np.uint8)), image.with_array(votes),
                        case.ensemble, postprocessing)


def folder_rule(folder: ModelFolder, postprocess: bool = True) -> Rule | None:
    """The model folder's saved postprocessing rule, when there is one and ``postprocess``."""
    from ichseg.postprocessing import load_rule

    return load_rule(folder.postprocessing_file) if postprocess and folder.postprocessing_file.is_file() else None


def write_case(case: EnsembledCase, rule: Rule | None, output_dir: Path, options: OutputOptions) -> CaseOutputs:
    """:func:`finish_case`, then the case's files."""
    from ichseg.report.outputs import write_segmentation

    return write_segmentation(finish_case(case, rule), output_dir, options)


def start_batch(scan: InputScan, run: Run, options: OutputOptions) -> tuple[PredictionResult, list[Path], OutputOptions]:
    """A batch's result so far (the inputs' problems, the cases a resumed run found complete),
    the cases still to segment, and the output options to write them with."""
    if run.resumed:  # only unfinished cases are written: their leftovers may be replaced
        options = replace(options, overwrite=True)
    result = PredictionResult(run.output_dir, failures=list(scan.problems), skipped=_finished_outputs(run))
    return result, pending_cases(scan, run), options


def pending_cases(scan: InputScan, run: Run) -> list[Path]:
    """The cases of ``scan`` a batch still has to segment (a resumed one skips those done)."""
    return [path for path in scan.cases if case_name(path) not in run.done]


def end_batch(result: PredictionResult, run: Run) -> PredictionResult:
    """The batch's CSV and overview over every case (skipped ones included), or nothing at all
    when no case succeeded."""
    from ichseg.report.outputs import write_batch_outputs

    if result.cases or result.skipped:
        every_case = sorted(result.skipped + result.cases, key=lambda case: case.name)
        write_batch_outputs(every_case, result.failures, run.output_dir, overwrite=True)
    run.finish(succeeded=bool(result.cases))
    return result


def _as_image(image: CTImage | np.ndarray | str | Path, spacing: Sequence[float] | None,
              series: str | None, allow_gaps: bool = False) -> CTImage:
    if isinstance(image, CTImage):
        return image
    if isinstance(image, (str, Path)):
        path = Path(image)
        if series is None or path.is_file():
            return load_image(path, allow_gaps=allow_gaps)
        from ichseg.io.dicom import load_dicom_series

        return load_dicom_series(path, series, allow_gaps=allow_gaps)
    array = np.asarray(image)
    if array.ndim != 3:
        raise InputError(f"a CT array must be 3D (z, y, x), got shape {array.shape}")
    if spacing is None or len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"a bare CT array needs its spacing: three positive (z, y, x) sizes in mm, got {spacing!r}")
    return CTImage(array, tuple(float(s) for s in spacing))  # type: ignore[arg-type]


def _as_scan(inputs: str | Path | Sequence[Path] | InputScan) -> InputScan:
    if isinstance(inputs, InputScan):
        return inputs
    return scan_inputs(inputs) if isinstance(inputs, (str, Path)) else InputScan(list(inputs))


def _finished_outputs(run: Run) -> list[CaseOutputs]:
    """The outputs of the cases a resumed batch found complete, from their JSON."""
    if not run.done:  # the report modules are imported by the writer, in the background
        return []
    from ichseg.report.outputs import CaseOutputs

    return [CaseOutputs(name, {kind: run.output_dir / file for kind, file in summary["outputs"].items()},
                        summary) for name, summary in run.done.items()]


class ReadAhead:
    """Cases read one ahead in a background thread, so that reading and preprocessing the next
    case overlap the networks' work on this one. The first read starts at once: made before the
    networks load (:func:`ichseg.prediction.predict`), it overlaps their loading too."""

    def __init__(self, cases: Sequence[Path], read: Callable[[Path], Any]) -> None:
        self.cases = list(cases)
        self._read = read
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="ichseg-read")
        self._pending = [self._reader.submit(read, path) for path in self.cases[:1]]

    def __iter__(self) -> Iterator[tuple[Path, Future[Any]]]:
        """Each case with its reading; the next one's starts when this one is handed out."""
        try:
            for index, path in enumerate(self.cases):
                if index + 1 < len(self.cases):
                    self._pending.append(self._reader.submit(self._read, self.cases[index + 1]))
                yield path, self._pending.pop(0)
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (cases not started are dropped)."""
        for pending in self._pending:
            pending.cancel()
        self._reader.shutdown(wait=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_input_geometry(canonical: CTImage, array: np.ndarray, original: CTImage) -> np.ndarray:
    """An array on the canonical grid, permuted and flipped back onto the input's grid."""
    back = canonical.with_array(array).reoriented(original.orientation)
    if back.shape != original.shape:
        raise RuntimeError(f"reorientation changed the shape {original.shape} -> {back.shape}")
    return back.array


def _numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
