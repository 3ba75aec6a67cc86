import numpy as np

from xvfa_ext.random_forest import RandomForestBaseline, morphometric_features
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed


def vertebrae(seed, n):
    """Labelled vertebrae only: imputed ones carry the imputation's error, not a reader's."""
    cfg = SyntheticConfig(prevalence="enriched", labelled_fraction=0.75)
    rows = [v for i in range(n) for v in generate_image(image_seed(seed, i), cfg)[1] if not v.imputed]
    kps = np.stack([v.annotated for v in rows])
    return kps, np.array([v.grade for v in rows]), np.array([v.morphology for v in rows])


def test_random_forest_as_the_paper_ran_it():
    model = RandomForestBaseline()
    assert model.grade.n_estimators == 100 and model.grade.max_depth == 2
    kps, grade, morphology = vertebrae(0, 40)
    model.fit(kps, grade, morphology)
    test_kps, test_grade, test_morphology = vertebrae(1, 20)
    result = model.evaluate(test_kps, test_grade, test_morphology, patient_ids=np.arange(len(test_kps)) // 10)
    assert result["vertebra"]["grade"]["normal_vs_fracture"]["auc"] > 0.9
    assert result["vertebra"]["morphology"]["concave"]["auc"] > 0.85
    assert result["patient"]["count"] == -(-len(test_kps) // 10)
    features, valid = morphometric_features(kps[:3])
    assert features.shape == (3, 6) and valid.all()
