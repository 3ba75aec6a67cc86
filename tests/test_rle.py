import math

import pytest
import torch

from xvfa_ext.rle import ResidualLogLikelihood, build_realnvp
from xvfa_ext.uncertainty import interval_radius


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, 6, 2, generator=g, requires_grad=True)
    scale = (0.05 + 0.1 * torch.rand(n, 6, 2, generator=g)).requires_grad_(True)
    target = mu.detach() + 0.05 * torch.randn(n, 6, 2, generator=g)
    return mu, scale, target


def test_flow_is_an_nflows_realnvp():
    from nflows.flows.realnvp import SimpleRealNVP

    assert isinstance(build_realnvp(), SimpleRealNVP)
    assert isinstance(ResidualLogLikelihood().flow, SimpleRealNVP)


@pytest.mark.parametrize("base", ["laplace", "gaussian"])
def test_loss_is_finite_and_trains_every_part(base):
    density = ResidualLogLikelihood(base=base)
    mu, scale, target = batch()
    loss = density(mu, scale, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert mu.grad.abs().sum() > 0 and scale.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in density.flow.parameters())


def test_loss_is_base_nll_plus_flow_nll_with_log_scale():
    density = ResidualLogLikelihood(base="gaussian")
    mu, scale, target = batch(n=1)
    r = (target - mu) / scale
    flow_nll = -density.flow.log_prob(r.reshape(-1, 2))
    base_nll = (0.5 * r**2 + 0.5 * math.log(2 * math.pi)).sum(-1).reshape(-1)
    expected = (base_nll + flow_nll + 2 * scale.log().sum(-1).reshape(-1)).mean()
    torch.testing.assert_close(density(mu, scale, target), expected)


def test_imputed_vertebrae_are_downweighted():
    density = ResidualLogLikelihood(imputed_weight=1e-3)
    mu, scale, target = batch(n=2)
    labelled = density(mu[:1], scale[:1], target[:1])
    both = density(mu, scale, target, imputed=torch.tensor([False, True]))
    imputed_alone = density(mu[1:], scale[1:], target[1:])
    # Mean over the 12 visible keypoints: the imputed vertebra counts 1e-3 times.
    torch.testing.assert_close(both, (6 * labelled + 6 * 1e-3 * imputed_alone) / 12)
    with pytest.raises(ValueError, match="imputed_weight"):
        ResidualLogLikelihood(imputed_weight=2.0)


def test_hidden_keypoints_add_no_loss_and_no_nan():
    density = ResidualLogLikelihood()
    mu, scale, target = batch(n=2)
    target[0, 3] = float("nan")
    visible = torch.ones(2, 6, dtype=torch.bool)
    visible[0, 3] = False
    loss = density(mu, scale, target, visible=visible)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(mu.grad).all() and torch.isfinite(scale.grad).all()
    assert mu.grad[0, 3].abs().sum() == 0


def test_samples_follow_mu_and_scale_and_are_reproducible():
    density = ResidualLogLikelihood(pool_size=1 << 14)
    mu = torch.tensor([[[10.0, 20.0]] * 6])
    scale = torch.tensor([[[1.0, 3.0]] * 6])
    s1 = density.sample(mu, scale, 2000, torch.Generator().manual_seed(1))
    s2 = density.sample(mu, scale, 2000, torch.Generator().manual_seed(1))
    assert s1.shape == (1, 2000, 6, 2)
    assert torch.equal(s1, s2)
    residual = (s1 - mu.unsqueeze(-3)) / scale.unsqueeze(-3)
    pool = density.flow.sample(20000).detach()
    torch.testing.assert_close(residual.reshape(-1, 2).std(0), pool.std(0), rtol=0.1, atol=0.05)


def test_sample_pool_is_redrawn_when_the_flow_changes():
    density = ResidualLogLikelihood(pool_size=1 << 12)
    mu, scale = torch.zeros(1, 6, 2), torch.ones(1, 6, 2)
    before = density.sample(mu, scale, 10, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in density.flow.parameters():
            p.add_(0.5)
    after = density.sample(mu, scale, 10, torch.Generator().manual_seed(0))
    assert not torch.equal(before, after)


def test_interval_radius_of_a_standard_normal():
    samples = torch.randn(1, 200000, 1, 2, generator=torch.Generator().manual_seed(0))
    for alpha in (0.5, 0.9, 0.95):
        eps = interval_radius(samples, torch.zeros(1, 1, 2), alpha)
        # The radius of a standard 2D normal holding alpha of its mass: sqrt(-2 ln(1 - alpha)).
        assert float(eps) == pytest.approx(math.sqrt(-2 * math.log(1 - alpha)), rel=0.01)
    with pytest.raises(ValueError, match="alpha"):
        interval_radius(samples, torch.zeros(1, 1, 2), 1.5)


def test_interval_radius_of_no_vertebra():
    assert interval_radius(torch.zeros(0, 10, 6, 2), torch.zeros(0, 6, 2)).shape == (0, 6)
