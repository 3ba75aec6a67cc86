"""The keypoint trunk at inference: BatchNorm folded, weights cast once, optionally compiled."""

import pytest
import torch

from xvfa_ext.keypoint_head import KeypointHead


def _trained_a_little(head: KeypointHead) -> KeypointHead:
    """A head whose BatchNorm statistics and weights are no longer their initial values."""
    head.train()
    with torch.no_grad():
        for _ in range(3):
            head(torch.rand(4, 1, 64, 64) * 2)  # running statistics move
        for p in head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return head.eval()


def _reference(head: KeypointHead, crops: torch.Tensor) -> torch.Tensor:
    """The trunk as trained (autocast, BatchNorm as a layer): eval mode with autograd on."""
    return head(crops)["mu"].detach()


_F32, _BF16 = ("float32", 1e-4), ("bfloat16", 3e-2)


@pytest.mark.parametrize(
    "regressor, stride, dtype, tolerance",
    [("heatmap", 4, *_F32), ("heatmap", 4, *_BF16), ("heatmap", 2, *_F32), ("pooled", 4, *_F32), ("pooled", 4, *_BF16)],
)
def test_folded_inference_matches_the_trunk_as_trained(regressor, stride, dtype, tolerance):
    torch.manual_seed(0)
    head = _trained_a_little(KeypointHead(trunk_dtype=dtype, regressor=regressor, heatmap_stride=stride))
    crops = torch.rand(5, 1, 64, 64)
    with torch.no_grad():
        folded = head(crops)["mu"]
    reference = _reference(head, crops)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in head.folded_trunk._module.modules())
    assert torch.linalg.vector_norm(folded - reference) / torch.linalg.vector_norm(reference) < tolerance


def test_folded_trunk_follows_new_weights():
    torch.manual_seed(0)
    head = KeypointHead(trunk_dtype="float32").eval()
    crops = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        before = head(crops)["mu"]
    other = _trained_a_little(KeypointHead(trunk_dtype="float32"))
    head.load_state_dict(other.state_dict())
    with torch.no_grad():
        after = head(crops)["mu"]
    assert not torch.allclose(before, after, atol=1e-4)
    torch.testing.assert_close(after, _reference(head, crops), rtol=1e-4, atol=1e-4)


def test_training_and_autograd_use_the_trunk_itself():
    head = KeypointHead().eval()
    out = head(torch.rand(2, 1, 64, 64))
    assert out["mu"].requires_grad
    assert head.folded_trunk._module is None


def test_compiled_inference_matches_and_follows_new_weights():
    torch.manual_seed(0)
    head = _trained_a_little(KeypointHead(trunk_dtype="float32", compile_inference=True))
    for count in (3, 5):  # another batch size runs without a new graph
        crops = torch.rand(count, 1, 64, 64)
        with torch.no_grad():
            compiled = head(crops)["mu"]
        torch.testing.assert_close(compiled, _reference(head, crops), rtol=1e-3, atol=1e-3)
    head.load_state_dict(_trained_a_little(KeypointHead(trunk_dtype="float32")).state_dict())
    with torch.no_grad():
        compiled = head(crops)["mu"]
    torch.testing.assert_close(compiled, _reference(head, crops), rtol=1e-3, atol=1e-3)


def test_a_failed_compile_is_reported_and_runs_uncompiled(monkeypatch, caplog):
    def broken_compile(module, **kwargs):
        def run(x):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    head = KeypointHead(trunk_dtype="float32", compile_inference=True).eval()
    crops = torch.rand(2, 1, 64, 64)
    with torch.no_grad(), caplog.at_level("WARNING"):
        first, second = head(crops)["mu"], head(crops)["mu"]
    assert [r.message for r in caplog.records if "uncompiled" in r.message] == [
        "Compiling the keypoint trunk failed, it runs uncompiled: no C++ compiler found"
    ]
    torch.testing.assert_close(first, _reference(head, crops), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, first)


@pytest.mark.parametrize("wrong, said", [
    (lambda out: out * float("nan"), "gives values that are not finite"),
    (lambda out: out + 10 * out.abs().max(), "differs from the uncompiled one by"),
])
def test_a_compiled_trunk_that_computes_wrongly_is_reported_and_runs_uncompiled(monkeypatch, caplog, wrong, said):
    calls = []

    def miscompile(module, **kwargs):
        def run(x):
            calls.append(len(x))
            out = module(x)
            return tuple(wrong(t) for t in out) if isinstance(out, tuple) else wrong(out)

        return run

    monkeypatch.setattr(torch, "compile", miscompile)
    torch.manual_seed(0)
    head = _trained_a_little(KeypointHead(trunk_dtype="float32", compile_inference=True))
    crops = torch.rand(2, 1, 64, 64)
    with torch.no_grad(), caplog.at_level("WARNING"):
        first, second = head(crops)["mu"], head(crops)["mu"]
    warnings = [r.message for r in caplog.records if "compiled keypoint trunk" in r.message]
    assert len(warnings) == 1 and said in warnings[0] and warnings[0].endswith("on its first input; it runs uncompiled")
    assert calls == [2]  # the compiled copy ran once, then never again
    torch.testing.assert_close(first, _reference(head, crops), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, first)


def test_a_compiled_trunk_within_tolerance_stays_compiled(monkeypatch, caplog):
    calls = []

    def close_compile(module, **kwargs):
        def run(x):
            calls.append(len(x))
            out = module(x)
            return tuple(t * 1.001 for t in out) if isinstance(out, tuple) else out * 1.001

        return run

    monkeypatch.setattr(torch, "compile", close_compile)
    head = KeypointHead(trunk_dtype="float32", compile_inference=True).eval()
    with torch.no_grad(), caplog.at_level("WARNING"):
        head(torch.rand(2, 1, 64, 64)), head(torch.rand(3, 1, 64, 64))
    assert calls == [2, 3] and not [r for r in caplog.records if "compiled keypoint trunk" in r.message]


@pytest.mark.parametrize("stride", [4, 2])
def test_heatmaps_have_the_stride_asked_for(stride):
    head = KeypointHead(heatmap_stride=stride).eval()
    with torch.no_grad():
        _, heatmaps = head.trunk(torch.rand(2, 3, 64, 64))
    assert heatmaps.shape == (2, 6, 64 // stride, 64 // stride)


def test_an_unknown_heatmap_stride_is_refused():
    with pytest.raises(ValueError, match="heatmap stride must be one of \\[4, 2\\], got 8"):
        KeypointHead(heatmap_stride=8)
