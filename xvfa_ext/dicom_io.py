"""DICOM out: a film's report as a Comprehensive SR (TID 1500 measurement report) and its drawing as a
Secondary Capture, both through highdicom, in the source film's study.

Each vertebra is one planar ROI measurement group: its six keypoints as a closed polyline on the
source image, its level as the finding site, its grade and morphology as qualitative evaluations,
the three heights in mm (where the film gives its pixel spacing), the reduction and the grade
probabilities as measurements, and the explanation as a comment. Concepts without a standard code
use the private coding scheme ``99XVFA``; units are UCUM.
"""

import logging
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from .gsq import GRADES

SCHEME = "99XVFA"
MANUFACTURER = "xvfa_ext"
# The outline of a vertebra through its six keypoints, closed.
OUTLINE = ("upper_posterior", "upper_middle", "upper_anterior", "lower_anterior", "lower_middle", "lower_posterior",
           "upper_posterior")


def _code(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


def _unit(ucum: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=ucum, scheme_designator="UCUM", meaning=meaning)


def _vertebra_group(vertebra: Dict, source):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    points = np.array([[vertebra["keypoints"][n]["x"], vertebra["keypoints"][n]["y"]] for n in OUTLINE], dtype=np.float32)
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=points,
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )
    level = vertebra.get("level") or "unknown"
    measurements = [
        hd.sr.Measurement(name=_code(f"height-{name}", f"{name} vertebral height"), value=float(value),
                          unit=_unit("mm", "millimeter"))
        for name, value in vertebra.get("heights_mm", {}).items()
    ]
    measurements.append(hd.sr.Measurement(name=_code("height-reduction", "Vertebral height reduction"),
                                          value=float(vertebra["reduction"]), unit=_unit("1", "no units")))
    probabilities = vertebra["grade_probabilities"]["combined"]
    measurements += [
        hd.sr.Measurement(name=_code(f"p-{g}", f"Probability of {g} grade"), value=float(probabilities[g]),
                          unit=_unit("1", "no units"))
        for g in GRADES
    ]
    evaluations = [
        hd.sr.QualitativeEvaluation(name=_code("gsq-grade", "Genant semiquantitative grade"),
                                    value=_code(vertebra["grade"], f"{vertebra['grade']} grade")),
        hd.sr.QualitativeEvaluation(name=_code("morphology", "Vertebral morphology"),
                                    value=_code(vertebra["morphology"], vertebra["morphology"])),
    ]
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"vertebra {vertebra['index']} {level}"),
        referenced_region=region,
        finding_type=_code("vertebra", "Vertebra"),
        finding_sites=[hd.sr.FindingSite(anatomic_location=_code(f"level-{level}", f"Vertebra {level}"))],
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(name=codes.DCM.Comment, value=vertebra["explanation"][:1024],
                              relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    )
    return group


def report_sr(report: Dict, source):
    """The Comprehensive SR of one film's ``report``; ``source`` is the film's DICOM dataset (its
    header suffices)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name=MANUFACTURER, model_name=f"model {report['model']['hash'][:16]}"
            ),
        )
    )
    measurement_report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=_code("vfa", "Vertebral fracture assessment"),
        imaging_measurements=[_vertebra_group(v, source) for v in report["vertebrae"]],
    )
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=measurement_report[0],
        series_instance_uid=hd.UID(),
        series_number=9901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
    )


def drawing_sc(drawing_bgr: np.ndarray, source):
    """A Secondary Capture of the drawing (``(H, W, 3)`` BGR uint8) in the source film's study."""
    import highdicom as hd

    orientation = tuple(source.get("PatientOrientation", None) or ()) or None
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(drawing_bgr[:, :, ::-1]),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=9902,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=orientation if orientation and len(orientation) == 2 else ("L", "F"),
    )


def write_dicom_outputs(film, report: Dict, drawing_bgr: np.ndarray, stem: Path) -> Tuple[Path, Path]:
    """``<stem>.sr.dcm`` and ``<stem>.sc.dcm`` of a DICOM film; ValueError for a film that is not DICOM."""
    import pydicom

    logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every module it copies
    if not film.uids.get("sop_uid"):
        raise ValueError(f"{film.path}: --dicom-out needs DICOM films (this one has no SOP instance UID)")
    source = pydicom.dcmread(str(film.path), stop_before_pixels=True)
    paths = stem.with_name(f"{stem.name}.sr.dcm"), stem.with_name(f"{stem.name}.sc.dcm")
    for path, dataset in zip(paths, (report_sr(report, source), drawing_sc(drawing_bgr, source))):
        tmp = path.with_name(f".{path.name}.tmp")
        dataset.save_as(str(tmp), enforce_file_format=True)
        tmp.replace(path)
    return paths
