import pytest
import torch

from xvfa_ext.classification import GSQLoss, ImageClassifier, combine_probabilities, inverse_frequency_weights
from xvfa_ext.vertebra_head import VertebraHead


def test_combined_probability_is_the_normalised_product():
    kps = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    img = torch.tensor([[0.2, 0.6, 0.1, 0.1]])
    product = torch.tensor([[0.14, 0.06, 0.01, 0.01]])
    torch.testing.assert_close(combine_probabilities(kps, img), product / product.sum())


def test_image_classifier_gives_distributions():
    grade, morphology = ImageClassifier(16)(torch.randn(5, 16))
    assert grade.shape == (5, 4) and morphology.shape == (5, 3)
    torch.testing.assert_close(grade.sum(-1), torch.ones(5))


def probs(n, k, seed):
    return torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(seed)), -1).requires_grad_(True)


def test_loss_is_weighted_cross_entropy_of_eq_8():
    grade_kps, morph_kps, grade_img, morph_img = probs(6, 4, 0), probs(6, 3, 1), probs(6, 4, 2), probs(6, 3, 3)
    grade = torch.tensor([0, 1, 2, 3, 0, -1])
    morphology = torch.tensor([0, 1, 2, 1, 0, 0])
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    loss = GSQLoss(lambda_kps=0.5, lambda_img=2.0, grade_weights=w)
    out = loss((grade_kps, morph_kps), (grade_img, morph_img), grade, morphology)
    g = grade[:5]
    grade_ce = -(w[g] * grade_kps[torch.arange(5), g].log()).sum() / w[g].sum()
    morph_ce = -morph_kps[torch.arange(6), morphology].log().mean()
    torch.testing.assert_close(out["loss_gsq_kps"], 0.5 * (grade_ce + morph_ce))
    assert out["loss_gsq_img"] > 0


@pytest.mark.parametrize("lambda_kps, lambda_img", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_ablations_switch_terms_off(lambda_kps, lambda_img):
    head = VertebraHead(lambda_kps=lambda_kps, lambda_img=lambda_img)
    crops = torch.rand(3, 1, 64, 64)
    out = head(crops, torch.full((3, 2), 30.0))
    targets = {
        "keypoints": torch.rand(3, 6, 2),
        "grade": torch.tensor([0, 2, 3]),
        "morphology": torch.tensor([0, 1, 2]),
        "imputed": torch.tensor([False, False, True]),
    }
    losses = head.losses(out, targets)
    assert set(losses) == {"loss_rle", "loss_gsq_kps", "loss_gsq_img"}
    assert (losses["loss_gsq_kps"] > 0) == bool(lambda_kps)
    assert (losses["loss_gsq_img"] > 0) == bool(lambda_img)
    sum(losses.values()).backward()
    image_grad = head.image_classifier.grade.weight.grad
    assert (image_grad is not None and image_grad.abs().sum() > 0) == bool(lambda_img)
    expected = out["grade_img"] if lambda_img and not lambda_kps else out["grade_kps"]
    if lambda_img and lambda_kps:
        expected = combine_probabilities(out["grade_kps"], out["grade_img"])
    torch.testing.assert_close(out["grade"], expected)


def test_uncertainty_through_the_head():
    head = VertebraHead().eval()
    boxes = torch.tensor([[10.0, 20.0, 50.0, 50.0]] * 13)
    with torch.no_grad():
        out = head(torch.rand(13, 1, 64, 64), boxes[:, 2:] - boxes[:, :2])
    u = head.uncertainty(out, boxes, alpha=0.9, num_samples=200)
    assert u.eps.shape == (13, 6) and (u.eps > 0).all()
    assert u.samples.shape == (13, 200, 6, 2)
    for name in ("combined_grade_mean", "combined_morphology_mean"):
        value = getattr(u, name)
        assert torch.isfinite(value).all()
        torch.testing.assert_close(value.sum(-1), torch.ones(13))
    assert (u.combined_grade_std >= 0).all() and (u.combined_morphology_std >= 0).all()


def test_inverse_frequency_weights():
    w = inverse_frequency_weights([0, 0, 0, 1, -1], 4)
    torch.testing.assert_close(w, torch.tensor([4 / 12, 4 / 4, 0.0, 0.0]))
    with pytest.raises(ValueError, match="class weights"):
        GSQLoss(grade_weights=[1, 2])
