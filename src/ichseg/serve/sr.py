"""The measurement report a PACS files beside the segmentation: DICOM TID 1500, via highdicom.

One volumetric measurement group for the hemorrhage, pointing at segment 1 of the DICOM-SEG
(which in turn references every source slice), with standard codes so that any TID 1500 reader
finds the numbers without knowing ichseg:

- finding: SCT 1386000 *Intracranial hemorrhage*, site SCT 12738006 *Brain*
- hematoma volume: SCT 118565006 *Volume*, method DCM 126030 *Sum of segmented voxel volumes*
- ABC/2: SCT 118565006 *Volume*, method DCM 126029 *LWH method for volume of ellipsoid*
  (A·B·C/2 is the ellipsoid's volume from its three diameters), on the largest hematoma
- uncertainty, with several models: SCT 118586006 *Ratio*, the ensemble's half ratio HR

A class map of several types gives one volumetric group per segment of the DICOM-SEG instead,
its finding type the type's code (:mod:`ichseg.io.hemorrhage_codes`), site SCT 1101003
*Intracranial*, its tracking identifier the segment's: the type's volume, and for the
intraparenchymal hematoma ABC/2 (on the largest one); then one group without a region
(TID 1501) for all types together: the total volume and the half ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ichseg.clinical.measures import INTRAPARENCHYMAL, CaseMeasures, SubtypeMeasures
from ichseg.ensemble.info import EnsembleInfo
from ichseg.io.dicom_seg import segment_tracking
from ichseg.io.hemorrhage_codes import INTRACRANIAL, class_coding
from ichseg.version import __version__

MILLILITER = Code("ml", "UCUM", "milliliter")
NO_UNITS = Code("1", "UCUM", "no units")
VOLUME = codes.SCT.Volume
HALF_RATIO = codes.SCT.Ratio
SUM_OF_VOXELS = codes.DCM.SumOfSegmentedVoxelMethodForVolume
ELLIPSOID_LWH = codes.DCM.LWHMethodForVolumeOfEllipsoid
FINDING = codes.SCT.IntracranialHemorrhage
FINDING_SITE = codes.SCT.Brain
PROCEDURE = codes.LN.HeadCT  # LOINC 24725-4
SERIES_DESCRIPTION = "ICH measurements (ichseg)"


def measurements(measures: CaseMeasures, ensemble: EnsembleInfo) -> list[hd.sr.Measurement]:
    """Volume, ABC/2 and, when several models voted and HR is defined, the half ratio."""
    found = [
        hd.sr.Measurement(name=VOLUME, value=round(measures.volume_ml, 3), unit=MILLILITER, method=SUM_OF_VOXELS),
        hd.sr.Measurement(name=VOLUME, value=round(measures.abc2.volume_ml, 3), unit=MILLILITER,
                          method=ELLIPSOID_LWH),
    ]
    if ensemble.is_ensemble and ensemble.hr is not None:
        found.append(hd.sr.Measurement(name=HALF_RATIO, value=round(float(ensemble.hr), 4), unit=NO_UNITS))
    return found


def measurement_report(seg: Dataset, sources: Sequence[Dataset], measures: CaseMeasures,
                       ensemble: EnsembleInfo, series_number: int) -> hd.sr.Comprehensive3DSR:
    """A Comprehensive 3D SR holding the TID 1500 report on the segments of ``seg``.

    ``sources`` are the CT slices the segmentation was made from; they and ``seg`` are listed as
    evidence, which is how the SR references the source series.
    """
    algorithm = hd.sr.AlgorithmIdentification(name="ichseg", version=__version__)
    subtypes = measures.subtypes
    tracked = segment_tracking(seg) if subtypes is not None else {}
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations
                 | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]
    if subtypes is not None and tracked:
        groups = [*(_type_group(seg, sources, number, name, uid, subtypes, algorithm)
                    for number, (name, uid) in sorted(tracked.items())),
                  _all_types_group(measures, ensemble, algorithm)]
    else:
        groups = [_volumetric_group(seg, sources, 1, hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier="Intracranial hemorrhage"), FINDING, FINDING_SITE, algorithm,
            measurements(measures, ensemble))]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="ichseg", model_name="ichseg", manufacturer_name="ichseg"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report, series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="ichseg", is_complete=True, is_final=False, is_verified=False,
        series_description=SERIES_DESCRIPTION,
    )


def _volumetric_group(seg: Dataset, sources: Sequence[Dataset], number: int,
                      tracking: hd.sr.TrackingIdentifier, finding: Code, site: Code,
                      algorithm: hd.sr.AlgorithmIdentification,
                      found: list[hd.sr.Measurement]) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The measurements of segment ``number`` of ``seg`` (which references the source series)."""
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID)),
        finding_type=finding, finding_sites=[hd.sr.FindingSite(site)], algorithm_id=algorithm,
        measurements=found)


def _type_group(seg: Dataset, sources: Sequence[Dataset], number: int, name: str, uid: str,
                subtypes: SubtypeMeasures, algorithm: hd.sr.AlgorithmIdentification
                ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """Segment ``number`` (type ``name``, tracked as ``uid`` in the SEG): its volume, and ABC/2 for
    the intraparenchymal hematoma."""
    coding = class_coding(name)
    found = [hd.sr.Measurement(name=VOLUME, value=round(subtypes.classes[name].volume_ml, 3), unit=MILLILITER,
                               method=SUM_OF_VOXELS)]
    if name == INTRAPARENCHYMAL and subtypes.iph_abc2 is not None:
        found.append(hd.sr.Measurement(name=VOLUME, value=round(subtypes.iph_abc2.volume_ml, 3),
                                       unit=MILLILITER, method=ELLIPSOID_LWH))
    return _volumetric_group(seg, sources, number, hd.sr.TrackingIdentifier(uid=uid, identifier=coding.label),
                             coding.finding, coding.region, algorithm, found)


def _all_types_group(measures: CaseMeasures, ensemble: EnsembleInfo,
                     algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Every type together, without a region: the total volume and, with several models, HR."""
    found = [hd.sr.Measurement(name=VOLUME, value=round(measures.volume_ml, 3), unit=MILLILITER,
                               method=SUM_OF_VOXELS)]
    if ensemble.is_ensemble and ensemble.hr is not None:
        found.append(hd.sr.Measurement(name=HALF_RATIO, value=round(float(ensemble.hr), 4), unit=NO_UNITS))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                     identifier="Intracranial hemorrhage, all types"),
        finding_type=FINDING, finding_sites=[hd.sr.FindingSite(INTRACRANIAL)], algorithm_id=algorithm,
        measurements=found)
