"""Random-forest baseline of Cheng et al. as the paper ran it: 100 trees of depth 2 on six morphometrics."""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from .gsq import GRADES, INVALID, MORPHOLOGIES, morphometry
from .metrics import screening_metrics

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
