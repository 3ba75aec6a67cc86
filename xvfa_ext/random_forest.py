"""Random-forest baseline of Cheng et al. as the paper ran it: 100 trees of depth 2 on six morphometrics."""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from .gsq import GRADES, INVALID, MORPHOLOGIES, morphometry
from .layout import read_points
from .metrics import screening_metrics
from .records import keypoint_array, missed_probabilities

FEATURES = ("ha", "hm", "hp", "apr", "mpr", "mar")


def morphometric_features(keypoints) -> Tuple[np.ndarray, np.ndarray]:
    """``(N, 6)`` features ``ha, hm, hp, APR, MPR, MAR`` of keypoints ``(N, 6, 2)`` and their validity."""
    m = morphometry(np.asarray(keypoints, dtype=np.float64))
    return np.stack([m[f].numpy() for f in FEATURES], axis=1), m["valid"].numpy()


class RandomForestBaseline:
    """One forest for grade and one for morphology, scored with :func:`screening_metrics`."""

    def __init__(self, n_estimators: int = 100, max_depth: int = 2, seed: int = 0):
        self.grade = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=seed)
        self.morphology = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=seed)

    def fit(self, keypoints, grade: Sequence[int], morphology: Sequence[int]) -> "RandomForestBaseline":
        x, valid = morphometric_features(keypoints)
        grade, morphology = np.asarray(grade), np.asarray(morphology)
        keep = valid & (grade != INVALID) & (morphology != INVALID)
        if not keep.any():
            raise ValueError("no valid labelled vertebra to fit the random forest on")
        self.grade.fit(x[keep], grade[keep])
        self.morphology.fit(x[keep], morphology[keep])
        return self

    def predict_proba(self, keypoints) -> Tuple[np.ndarray, np.ndarray]:
        """Grade ``(N, 4)`` and morphology ``(N, 3)`` probabilities; classes unseen in training get 0."""
        x, valid = morphometric_features(keypoints)
        out = []
        for forest, names in ((self.grade, GRADES), (self.morphology, MORPHOLOGIES)):
            probs = np.zeros((len(x), len(names)))
            probs[:, forest.classes_] = forest.predict_proba(x)
            probs[~valid] = 1.0 / len(names)
            out.append(probs)
        return out[0], out[1]

    def evaluate(self, keypoints, grade, morphology, patient_ids: Optional[Sequence[str]] = None) -> Dict:
        grade_probs, morphology_probs = self.predict_proba(keypoints)
        return screening_metrics(grade, grade_probs, morphology, morphology_probs, patient_ids)


def annotated_vertebrae(records: Sequence[Dict]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints ``(N, 6, 2)``, grade and morphology of the read vertebrae of detectron2 dataset dicts.

    Imputed vertebrae and vertebrae without all six keypoints are left out: the forest learns from
    what readers measured.
    """
    kps, grade, morphology = [], [], []
    for record in records:
        for ann in record["annotations"]:
            points = read_points(ann)
            if points is None:
                continue
            kps.append(points)
            grade.append(int(ann["grade"]))
            morphology.append(int(ann["morphology"]))
    return np.array(kps, dtype=float).reshape(-1, 6, 2), np.array(grade, dtype=int), np.array(morphology, dtype=int)


def evaluate_on_rows(forest: RandomForestBaseline, rows: Sequence[Dict]) -> Dict:
    """:func:`screening_metrics` of the forest on the predicted keypoints of ``VFAEvaluator``'s rows.

    Read (not imputed) rows are scored, as the evaluator scores them; a missed vertebra (no
    prediction) counts as certainly normal.
    """
    scored = [r for r in rows if not r["imputed"]]
    if not scored:
        raise ValueError("the predictions hold no read vertebra to score")
    found = [i for i, r in enumerate(scored) if r["prediction"] is not None]
    grade_probs = np.tile(missed_probabilities("grade"), (len(scored), 1))
    morphology_probs = np.tile(missed_probabilities("morphology"), (len(scored), 1))
    if found:
        kps = np.array([keypoint_array(scored[i]["prediction"]) for i in found])
        grade_probs[found], morphology_probs[found] = forest.predict_proba(kps)
    return screening_metrics(
        [r["grade"] for r in scored], grade_probs, [r["morphology"] for r in scored], morphology_probs,
        [r["patient_id"] for r in scored],
    )
