"""Every flow, parametrised (zuko style): invertibility, log-determinant against autograd's Jacobian,
shapes, gradients, conditioning, save/load, repr and errors. Plus parity with Pixyz 0.3.3 where the
maths is the same, the non-bijective multi-scale Split, and Pixyz's calling convention: built-in flows
return tensors and report ``logdet_jacobian`` (never read by the library), flows written the Pixyz
way work alone, in a FlowList and in the flow distributions (log-densities against closed forms), and
``set_epsilon`` reaches the flows that take an ``eps``."""

from __future__ import annotations

import io
import math

import pixyz.flows as pzf
import pixyz.utils as pzu
import pytest
import torch
from torch import nn

from pixyz_like.distributions import InverseTransformedDistribution, Normal, TransformedDistribution
from pixyz_like.errors import NotDefinedError, ParameterError, ShapeError
from pixyz_like.flows import (
    IAF,
    MADE,
    MAF,
    ActNorm2d,
    AffineCoupling,
    BatchNorm1d,
    BatchNorm2d,
    ChannelConv,
    Flatten,
    Flow,
    FlowList,
    HouseholderFlow,
    NeuralSplineCoupling,
    Permutation,
    PlanarFlow,
    Preprocess,
    RadialFlow,
    Reverse,
    Shuffle,
    Split,
    Squeeze,
    SylvesterFlow,
    Unsqueeze,
)
from pixyz_like.layers import ResNet
from pixyz_like.losses import Expectation
from pixyz_like.models import ML
from pixyz_like.utils import epsilon, set_epsilon

# ---------------------------------------------------------------------------------------------- nets


class VecST(nn.Module):
    """(s, t) for a vector coupling; conditional when cond > 0."""

    def __init__(self, d: int, cond: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + cond, 16), nn.Tanh(), nn.Linear(16, 2 * d))

    def forward(self, x, y=None):
        h = self.net(x if y is None else torch.cat([x, y], -1))
        s, t = h.chunk(2, -1)
        return torch.tanh(s), t


class ImgNet(nn.Module):
    def __init__(self, c: int, squash: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.squash = squash

    def forward(self, x):
        h = self.conv(x)
        return torch.tanh(h) if self.squash else h


class ResNetST(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.net = ResNet(c, 8, 2 * c, num_blocks=1, kernel_size=3, padding=1, double_after_norm=True)

    def forward(self, x):
        s, t = self.net(x).chunk(2, 1)
        return torch.tanh(s), t


def _trained_bn(cls, shape):
    f = cls(shape[1])
    f(torch.randn(32, *shape[1:]) * 2 + 0.5)  # training-mode call: sets running statistics
    with torch.no_grad():
        f.log_gamma.normal_(0, 0.3)
        f.beta.normal_(0, 0.3)
    return f.eval()


def _inited_actnorm(shape):
    f = ActNorm2d(shape[1])
    f(torch.randn(16, *shape[1:]) * 3 + 1)
    with torch.no_grad():
        f.logs.add_(torch.randn_like(f.logs) * 0.2)
    return f


# ---------------------------------------------------------------------------------------------- cases
# name -> (factory, input shape, condition shape or None, input sampler)
VEC = (3, 4)
IMG = (2, 2, 4, 4)


def _unit(shape):
    return torch.rand(shape).clamp(0.01, 0.99)


CASES = {
    "PlanarFlow": (lambda: PlanarFlow(4, constraint_u=True), VEC, None, torch.randn),
    "RadialFlow": (lambda: RadialFlow(4), VEC, None, torch.randn),
    "AffineCoupling-vector": (lambda: AffineCoupling(4, scale_translate_net=VecST(4)), VEC, None, torch.randn),
    "AffineCoupling-vector-cond": (
        lambda: AffineCoupling(4, scale_translate_net=VecST(4, 3), inverse_mask=True),
        VEC,
        (3, 3),
        torch.randn,
    ),
    "AffineCoupling-checkerboard": (
        lambda: AffineCoupling(2, "checkerboard", scale_net=ImgNet(2, True), translate_net=ImgNet(2)),
        IMG,
        None,
        torch.randn,
    ),
    "AffineCoupling-resnet": (
        lambda: AffineCoupling(2, scale_translate_net=ResNetST(2), inverse_mask=True).eval(),
        IMG,
        None,
        torch.randn,
    ),
    "ChannelConv": (lambda: ChannelConv(2), IMG, None, torch.randn),
    "ChannelConv-LU": (lambda: ChannelConv(3, decomposed=True), (2, 3, 2, 2), None, torch.randn),
    "Squeeze": (Squeeze, IMG, None, torch.randn),
    "Unsqueeze": (Unsqueeze, (2, 4, 2, 2), None, torch.randn),
    "Permutation": (lambda: Permutation([2, 0, 3, 1]), VEC, None, torch.randn),
    "Shuffle": (lambda: Shuffle(2), IMG, None, torch.randn),
    "Reverse": (lambda: Reverse(4), VEC, None, torch.randn),
    "Flatten": (lambda: Flatten((2, 4, 4)), IMG, None, torch.randn),
    "Preprocess": (lambda: Preprocess(dequantize=False), IMG, None, _unit),
    "BatchNorm1d": (lambda: _trained_bn(BatchNorm1d, VEC), VEC, None, torch.randn),
    "BatchNorm2d": (lambda: _trained_bn(BatchNorm2d, IMG), IMG, None, torch.randn),
    "ActNorm2d": (lambda: _inited_actnorm(IMG), IMG, None, torch.randn),
    "MAF": (lambda: MAF(4, hidden_features=(16, 16)), VEC, None, torch.randn),
    "MAF-cond": (lambda: MAF(4, hidden_features=(16,), cond_features=2, reverse=True), VEC, (3, 2), torch.randn),
    "IAF": (lambda: IAF(4, hidden_features=(16, 16)), VEC, None, torch.randn),
    "IAF-cond": (lambda: IAF(4, hidden_features=(16,), cond_features=2), VEC, (3, 2), torch.randn),
    "HouseholderFlow": (lambda: HouseholderFlow(4, num_reflections=3), VEC, None, torch.randn),
    "HouseholderFlow-cond": (lambda: HouseholderFlow(4, 2, cond_features=5), VEC, (3, 5), torch.randn),
    "SylvesterFlow": (lambda: SylvesterFlow(4), VEC, None, torch.randn),
    "SylvesterFlow-cond": (lambda: SylvesterFlow(4, num_householder=2, cond_features=5), VEC, (3, 5), torch.randn),
    "NeuralSplineCoupling": (
        lambda: NeuralSplineCoupling(4, hidden_features=16, num_bins=5, tail_bound=2.0),
        VEC,
        None,
        lambda s: torch.randn(s) * 1.5,  # some values beyond the tail bound: the identity tails are covered
    ),
    "NeuralSplineCoupling-cond": (
        lambda: NeuralSplineCoupling(4, hidden_features=16, mask_type="checkerboard", cond_features=3),
        VEC,
        (3, 3),
        torch.randn,
    ),
    "FlowList": (
        lambda: FlowList([AffineCoupling(4, scale_translate_net=VecST(4)), Reverse(4), MAF(4, (8,)), RadialFlow(4)]),
        VEC,
        None,
        torch.randn,
    ),
    "FlowList-images": (
        lambda: FlowList(
            [ActNorm2d(2), ChannelConv(2, True), Squeeze(), AffineCoupling(8, scale_translate_net=ResNetST(8))]
        ).eval(),
        IMG,
        None,
        torch.randn,
    ),
}
BIJECTIVE = sorted(CASES)
COND = sorted(k for k, c in CASES.items() if c[2] is not None)


def make(name, dtype=torch.float64, seed=0):
    factory, shape, cshape, sampler = CASES[name]
    torch.manual_seed(seed)
    f = factory().to(dtype)
    torch.manual_seed(seed + 100)
    x = sampler(shape).to(dtype)
    y = None if cshape is None else torch.randn(cshape, dtype=dtype)
    return f, x, y


# ---------------------------------------------------------------------------------------------- maths


@pytest.mark.parametrize("name", BIJECTIVE)
def test_inverse_of_forward_is_identity(name):
    f, x, y = make(name)
    z, logdet = f.transform(x, y)
    x2, logdet_inv = f.inverse_transform(z, y)
    torch.testing.assert_close(x2, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logdet_inv, -logdet, atol=1e-6, rtol=1e-6)
    z2, _ = f.transform(x2, y)
    torch.testing.assert_close(z2, z, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", BIJECTIVE)
def test_logdet_equals_log_abs_det_of_autograd_jacobian(name):
    f, x, y = make(name)
    _, logdet = f.transform(x, y)
    for i in range(x.shape[0]):
        yi = None if y is None else y[i : i + 1]

        def fn(v, yi=yi):
            return f(v.view(1, *x.shape[1:]), yi).reshape(-1)

        jac = torch.autograd.functional.jacobian(fn, x[i].reshape(-1))
        expected = torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(logdet[i], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", BIJECTIVE)
def test_shapes_and_compute_jacobian_false(name):
    f, x, y = make(name)
    z, logdet = f.transform(x, y)
    assert logdet.shape == (x.shape[0],)
    assert z.shape[0] == x.shape[0] and z.numel() == x.numel()
    z2, none = f.transform(x, y, compute_jacobian=False)
    assert none is None
    torch.testing.assert_close(z2, z)
    x2, none = f.inverse_transform(z, y, compute_jacobian=False)
    assert none is None and x2.shape == x.shape


@pytest.mark.parametrize("name", BIJECTIVE + ["Split-learned"])
def test_gradients_reach_every_parameter(name):
    if name == "Split-learned":
        f, x, y = Split(4), torch.randn(3, 4, 2, 2), None
    else:
        f, x, y = make(name, torch.float32)
    x = x.clone().requires_grad_()
    z, logdet = f.transform(x, y)
    # Not rotation-invariant, so Householder vectors get a gradient too.
    loss = (z * torch.randn_like(z)).sum() + (z**2 * torch.rand_like(z)).sum() + logdet.sum()
    if name.startswith(("IAF", "MAF")):
        loss = loss + f.inverse(z.detach(), y).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in f.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", COND)
def test_conditional_flows_respond_to_their_condition(name):
    f, x, y = make(name)
    z1, ld1 = f.transform(x, y)
    z2, ld2 = f.transform(x, y + 1.0)
    assert not torch.allclose(z1, z2)
    # each condition gives an invertible map of its own
    torch.testing.assert_close(f.inverse(z2, y + 1.0), x, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", COND)
def test_conditional_flows_demand_their_condition(name):
    f, x, _ = make(name)
    # the network's own error (torch's, or Python's for a missing argument) with a note naming the flow
    with pytest.raises((ShapeError, TypeError, RuntimeError)) as info:
        f(x)
    if not isinstance(info.value, ShapeError):
        assert "a conditional network needs y" in info.value.__notes__[-1]


@pytest.mark.parametrize("name", BIJECTIVE)
def test_save_load_round_trip(name):
    f, x, y = make(name, seed=0)
    buf = io.BytesIO()
    torch.save(f.state_dict(), buf)
    buf.seek(0)
    g, _, _ = make(name, seed=7)
    g.load_state_dict(torch.load(buf))
    g.train(f.training)
    torch.testing.assert_close(g.transform(x, y)[0], f.transform(x, y)[0])
    torch.testing.assert_close(g.transform(x, y)[1], f.transform(x, y)[1])


@pytest.mark.parametrize("name", BIJECTIVE)
def test_repr_names_the_class(name):
    f, _, _ = make(name)
    text = repr(f)
    assert (type(f).__name__ if not isinstance(f, FlowList) else "FlowList") in text


def test_flowlist_is_sequence_and_repr():
    f = FlowList([Reverse(2), PlanarFlow(2)])
    assert len(f) == 2 and isinstance(f[0], Reverse) and isinstance(f[1:], FlowList)
    assert list(f) == [f[0], f[1]]
    assert repr(f).startswith("FlowList(") and "PlanarFlow(in_features=2, constraint_u=False)" in repr(f)


def test_transform_keeps_nothing_on_the_flow():
    f = AffineCoupling(2, scale_translate_net=VecST(2))
    _, ld1 = f.transform(torch.randn(3, 2))
    _, ld2 = f.transform(torch.randn(5, 2))
    assert ld1.shape == (3,) and ld2.shape == (5,)
    assert f.logdet_jacobian is None  # only the Pixyz-convention forward reports a log-det


# ---------------------------------------------------------------------------------------------- specifics


def test_made_is_autoregressive():
    made = MADE(5, hidden_features=(32, 32), reverse=True)
    x = torch.randn(1, 5)
    jac = torch.autograd.functional.jacobian(lambda v: made(v.view(1, 5)).reshape(2, 5), x.view(5))
    order = made.degrees  # output i may only depend on inputs of smaller degree
    allowed = order.view(1, 5, 1) > order.view(1, 1, 5)
    assert (jac.abs() * ~allowed).max() == 0
    assert (jac.abs() * allowed).sum() > 0


def test_maf_density_direction_is_one_pass_and_iaf_sampling_direction_is_one_pass():
    calls = []
    maf, iaf = MAF(6, (8,)), IAF(6, (8,))
    for m in (maf.made, iaf.made):
        m.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(4, 6)
    maf(x)
    iaf(x)
    assert len(calls) == 2
    calls.clear()
    maf.inverse(x)
    assert len(calls) == 6


def test_batchnorm_training_mode_uses_batch_statistics_and_updates_running_ones():
    f = BatchNorm1d(3, momentum=0.5)
    x1, x2 = torch.randn(500, 3) * 2 + 1, torch.randn(500, 3) * 3 - 1
    z, logdet = f.transform(x1)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.running_mean, x1.mean(0))
    torch.testing.assert_close(logdet, (-0.5 * (x1.var(0, unbiased=False) + f.eps).log()).sum().expand(500))
    f(x2)
    torch.testing.assert_close(f.running_mean, 0.5 * x1.mean(0) + 0.5 * x2.mean(0))
    torch.testing.assert_close(f.running_var, 0.5 * x1.var(0, unbiased=False) + 0.5 * x2.var(0, unbiased=False))
    f.eval()
    z, logdet = f.transform(x1)
    torch.testing.assert_close(z, (x1 - f.running_mean) / (f.running_var + f.eps).sqrt())


def test_actnorm_initialises_once_and_survives_reload():
    f = ActNorm2d(2)
    x = torch.randn(64, 2, 3, 3) * 4 + 2
    z, _ = f.transform(x)
    torch.testing.assert_close(z.std((0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    g = ActNorm2d(2)
    g.load_state_dict(f.state_dict())
    z2, _ = g.transform(torch.randn(64, 2, 3, 3))  # a new batch must not re-initialise a loaded layer
    torch.testing.assert_close(g.bias, f.bias)
    assert bool(g.initialized)
    assert z2.shape == z.shape


def test_shuffle_draws_with_torch_rng():
    torch.manual_seed(3)
    a = Shuffle(10).permute_indices
    torch.manual_seed(3)
    b = Shuffle(10).permute_indices
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(10))


def test_preprocess_dequantises_within_a_pixel_and_is_logit():
    x = torch.randint(0, 256, (4, 1, 2, 2)).float() / 255
    f = Preprocess()
    z, _ = f.transform(x)
    xt, _ = f.inverse_transform(z)
    assert ((xt * 256 - x * 255) >= -1e-4).all() and ((xt * 256 - x * 255) < 1 + 1e-4).all()
    p = 0.025 + 0.95 * xt
    torch.testing.assert_close(z, torch.log(p / (1 - p)), atol=1e-5, rtol=1e-5)


def test_flatten_fixes_its_size_on_first_call_and_checks_it():
    f = Flatten()
    with pytest.raises(NotDefinedError, match="in_size"):
        f.inverse(torch.zeros(2, 12))
    f(torch.zeros(2, 3, 2, 2))
    assert f.inverse(torch.zeros(5, 12)).shape == (5, 3, 2, 2)
    with pytest.raises(ShapeError, match=r"Flatten.forward: expected input of shape \(batch, 3, 2, 2\)"):
        f(torch.zeros(2, 4, 2, 2))
    g = Flatten()
    g.load_state_dict(f.state_dict())
    assert g.in_size == (3, 2, 2)


def test_planar_without_constraint_refuses_a_non_invertible_inverse():
    f = PlanarFlow(2)
    with torch.no_grad():
        f.w.copy_(torch.tensor([[1.0, 0.0]]))
        f.u.copy_(torch.tensor([[-3.0, 0.0]]))
        f.b.zero_()
    _, logdet = f.transform(torch.zeros(1, 2))  # det = 1 + (1 - tanh(0)^2) w.u = -2
    torch.testing.assert_close(logdet, torch.tensor([2.0]).log())
    with pytest.raises(NotDefinedError, match="PlanarFlow.*constraint_u=True"):
        f.inverse(torch.zeros(1, 2))
    f.constraint_u = True
    w_u = (f.w * f.u_hat()).sum()
    assert w_u > -1


def test_sylvester_diagonal_keeps_it_invertible_for_any_parameters():
    f = SylvesterFlow(3).double()
    with torch.no_grad():
        for p in f.parameters():
            p.normal_(0, 5)
    x = torch.randn(6, 3, dtype=torch.float64) * 3
    z, logdet = f.transform(x)
    assert torch.isfinite(logdet).all()
    torch.testing.assert_close(f.inverse(z), x, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- Split


def test_split_standard_prior_scores_the_factored_half():
    f = Split(5, prior="standard")
    x = torch.randn(4, 5)
    z, logdet = f.transform(x)
    assert torch.equal(z, x[:, :3])
    torch.testing.assert_close(logdet, torch.distributions.Normal(0.0, 1.0).log_prob(x[:, 3:]).sum(-1))


def test_split_learned_prior_scores_under_its_network_and_inverse_is_consistent():
    f = Split(4)
    with torch.no_grad():
        f.net.conv.weight.normal_(0, 0.3)
        f.net.conv.bias.normal_(0, 0.3)
    x = torch.randn(3, 4, 4, 4)
    z, logdet = f.transform(x)
    out = f.net(z)
    normal = torch.distributions.Normal(out[:, :2], out[:, 2:].exp())
    torch.testing.assert_close(logdet, normal.log_prob(x[:, 2:]).sum((1, 2, 3)))
    x2, logdet_inv = f.inverse_transform(z)
    assert torch.equal(x2[:, :2], z)
    z2, logdet2 = f.transform(x2)
    torch.testing.assert_close(z2, z)
    torch.testing.assert_close(logdet_inv, -logdet2)
    assert not f.bijective and not FlowList([Squeeze(), Split(16)]).bijective


def test_split_errors():
    with pytest.raises(ParameterError, match="Split"):
        Split(1)
    with pytest.raises(ShapeError, match=r"Split\(in_features=4\).*\(batch, 2\)"):
        Split(4).inverse(torch.zeros(2, 3))


# ---------------------------------------------------------------------------------------------- errors

SIZED = sorted(k for k in BIJECTIVE if make(k)[0].in_features is not None)


@pytest.mark.parametrize("name", SIZED)
def test_wrong_feature_size_is_a_shape_error_naming_class_and_shape(name):
    f, x, y = make(name)
    bad = torch.randn(x.shape[0], x.shape[1] + 1, *x.shape[2:], dtype=x.dtype)
    with pytest.raises(ShapeError) as info:
        f(bad, y)
    msg = str(info.value)
    cls = type(f).__name__ if not isinstance(f, FlowList) else type(f[0]).__name__
    assert cls in msg and f"(batch, {x.shape[1]}" in msg and str(tuple(bad.shape)) in msg


def test_non_invertible_configurations_are_refused():
    with pytest.raises(ParameterError, match=r"AffineCoupling\(in_features=1\).*in_features >= 2"):
        AffineCoupling(1, scale_translate_net=VecST(1))
    f = AffineCoupling(3, "checkerboard", scale_translate_net=lambda h: (h, h))
    with pytest.raises(ShapeError, match="checkerboard mask needs at least 2 pixels"):
        f(torch.zeros(2, 3, 1, 1))
    with pytest.raises(ParameterError, match="nothing to"):
        NeuralSplineCoupling(1)
    with pytest.raises(ParameterError, match="mask_type"):
        AffineCoupling(2, mask_type="diagonal", scale_translate_net=VecST(2))
    with pytest.raises(ParameterError, match="scale_net and translate_net"):
        AffineCoupling(2, scale_net=VecST(2))
    with pytest.raises(ParameterError, match="permutation"):
        Permutation([0, 0, 1])
    with pytest.raises(ShapeError, match="AffineCoupling.*network's s has shape"):
        AffineCoupling(2, scale_translate_net=lambda h: (h[:, :1], h))(torch.zeros(3, 2))


def test_squeeze_odd_size_and_unsqueeze_bad_channels():
    with pytest.raises(ShapeError, match=r"Squeeze.forward: .*even height and width, got \(1, 1, 3, 4\)"):
        Squeeze()(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ShapeError, match=r"Unsqueeze.forward: .*channels divisible by 4, got \(1, 3, 2, 2\)"):
        Unsqueeze()(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ShapeError, match="Squeeze"):
        Squeeze()(torch.zeros(4, 4))


def test_flow_base_is_identity_and_validates():
    z, ld = Flow(2).transform(torch.ones(3, 2))
    assert torch.equal(z, torch.ones(3, 2)) and torch.equal(ld, torch.zeros(3))
    x, ld = Flow(2).inverse_transform(torch.ones(3, 2))
    assert torch.equal(x, torch.ones(3, 2)) and torch.equal(ld, torch.zeros(3))
    with pytest.raises(ParameterError):
        Flow(0)
    with pytest.raises(ParameterError):
        FlowList([])
    with pytest.raises(TypeError, match="not a Flow"):
        FlowList([nn.Linear(2, 2)])


# ---------------------------------------------------------------------------------------------- Pixyz parity


def test_squeeze_unsqueeze_layout_matches_pixyz():
    a = torch.randn(2, 3, 4, 6)
    assert torch.equal(Squeeze()(a), pzf.Squeeze()(a))
    b = torch.randn(2, 8, 2, 3)
    assert torch.equal(Unsqueeze()(b), pzf.Unsqueeze()(b))


@pytest.mark.parametrize(
    "mask_type,shape", [("channel_wise", (5, 4)), ("checkerboard", (2, 2, 4, 4)), ("channel_wise", (2, 4, 3, 3))]
)
def test_affine_coupling_matches_pixyz(mask_type, shape):
    c = shape[1]
    net = VecST(c) if len(shape) == 2 else (lambda h: (torch.tanh(h.roll(1, 1)), h.flip(1)))
    ours = AffineCoupling(c, mask_type, scale_translate_net=net, inverse_mask=True)
    theirs = pzf.AffineCoupling(c, mask_type, scale_translate_net=net, inverse_mask=True)
    x = torch.randn(shape)
    z, logdet = ours.transform(x)
    torch.testing.assert_close(z, theirs(x, compute_jacobian=True))
    torch.testing.assert_close(logdet, theirs.logdet_jacobian)
    torch.testing.assert_close(ours.inverse(z), theirs.inverse(z))


def test_planar_and_channel_conv_and_actnorm_match_pixyz():
    ours, theirs = PlanarFlow(3), pzf.PlanarFlow(3)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 3)
    z, logdet = ours.transform(x)
    torch.testing.assert_close(z, theirs(x))
    torch.testing.assert_close(logdet, theirs.logdet_jacobian, atol=1e-5, rtol=1e-5)  # Pixyz adds an epsilon

    ours, theirs = ChannelConv(3), pzf.ChannelConv(3)
    theirs.weight.data.copy_(ours.weight.data)
    x = torch.randn(2, 3, 4, 4)
    z, logdet = ours.transform(x)
    torch.testing.assert_close(z, theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet, theirs.logdet_jacobian.expand(2), atol=1e-5, rtol=1e-5)

    ours, theirs = ActNorm2d(3), pzf.ActNorm2d(3)
    x = torch.randn(16, 3, 4, 4) * 2 + 1
    z, logdet = ours.transform(x)
    torch.testing.assert_close(z, theirs(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logdet, theirs.logdet_jacobian.expand(16), atol=1e-3, rtol=1e-4)


def test_preprocess_and_batchnorm_training_forward_match_pixyz():
    x = torch.rand(3, 1, 4, 4)
    torch.manual_seed(5)
    z, logdet = Preprocess().transform(x)
    torch.manual_seed(5)
    theirs = pzf.Preprocess()
    torch.testing.assert_close(z, theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet, theirs.logdet_jacobian, atol=1e-3, rtol=1e-5)

    x = torch.randn(50, 4) * 3
    ours, theirs = BatchNorm1d(4, eps=1e-7), pzf.BatchNorm1d(4)  # Pixyz's epsilon is 1e-7
    z, logdet = ours.transform(x)
    torch.testing.assert_close(z, theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet, theirs.logdet_jacobian.expand(50), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- Pixyz's convention
# forward/inverse return tensors, logdet_jacobian reports the last forward; the library uses transform.


@pytest.mark.parametrize("name", BIJECTIVE)
def test_builtin_flows_follow_pixyz_convention(name):
    f, x, y = make(name)
    z_ref, ld_ref = f.transform(x, y)
    z = f(x, y)
    assert isinstance(z, torch.Tensor)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(f.logdet_jacobian, ld_ref)
    torch.testing.assert_close(f.forward(x, y, compute_jacobian=True), z_ref)
    x_back = f.inverse(z, y)
    assert isinstance(x_back, torch.Tensor)
    torch.testing.assert_close(x_back, f.inverse_transform(z, y)[0])
    torch.testing.assert_close(x_back, x, atol=1e-6, rtol=1e-6)
    # compute_jacobian=False: a tensor, and no log-det reported
    assert isinstance(f(x, y, compute_jacobian=False), torch.Tensor) and f.logdet_jacobian is None


@pytest.mark.parametrize("name", BIJECTIVE)
def test_transform_leaves_the_pixyz_attribute_alone(name):
    f, x, y = make(name)
    z = f(x, y)
    reported = f.logdet_jacobian
    f.transform(x[:2], None if y is None else y[:2])
    f.inverse_transform(z[:2], None if y is None else y[:2])
    f.inverse(z, y)
    assert f.logdet_jacobian is reported


def test_logdet_jacobian_is_none_before_any_call_and_read_only():
    f = AffineCoupling(2, scale_translate_net=VecST(2))
    assert f.logdet_jacobian is None
    with pytest.raises(AttributeError):
        f.logdet_jacobian = torch.zeros(3)


def test_flowlist_reports_its_sum_and_leaves_its_members_alone():
    layers = [AffineCoupling(3, scale_translate_net=VecST(3)), Reverse(3), PlanarFlow(3)]
    f = FlowList(layers)
    x = torch.randn(4, 3)
    z = f(x)
    h, total = x, torch.zeros(4)
    for layer in layers:
        h, ld = layer.transform(h)
        total = total + ld
    torch.testing.assert_close(z, h)
    torch.testing.assert_close(f.logdet_jacobian, total)
    assert all(layer.logdet_jacobian is None for layer in layers)


class _Poison:
    """A stale ``_logdet_jacobian``: any arithmetic with it, or any use as a tensor, fails."""


def test_the_library_never_reads_logdet_jacobian_of_builtin_flows(monkeypatch):
    def poisoned(self):
        raise AssertionError(f"{type(self).__name__}.logdet_jacobian was read")

    monkeypatch.setattr(Flow, "logdet_jacobian", property(poisoned))
    flow = FlowList([AffineCoupling(2, scale_translate_net=VecST(2)), Reverse(2), PlanarFlow(2, constraint_u=True)])
    for m in flow.modules():
        if isinstance(m, Flow):
            m._logdet_jacobian = _Poison()
    base = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"], name="p_0")
    p = InverseTransformedDistribution(base, flow, var=["x"])
    q = TransformedDistribution(base, flow, var=["x"])
    x = torch.randn(5, 2)
    z, ld = flow.transform(x)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) + ld
    torch.testing.assert_close(p.get_log_prob({"x": x}), expected)
    out, lp = p.sample(batch_n=3, return_log_prob=True)
    torch.testing.assert_close(lp, p.get_log_prob({"x": out["x"]}), atol=1e-5, rtol=1e-5)
    out, lp = q.sample(batch_n=3, return_log_prob=True, compute_jacobian=False)
    torch.testing.assert_close(lp, q.get_log_prob({"x": out["x"]}), atol=1e-4, rtol=1e-4)
    assert torch.isfinite(Expectation(q, -q.log_prob()).eval({})).all()
    ML(p, optimizer_params={"lr": 1e-3}).train({"x": x})


# ---------------------------------------------------------------------------------------------- user flows


class PixyzAffine(Flow):
    r"""An elementwise affine map :math:`z = e^{a} \odot x + b`, written as a Pixyz 0.3.3 program writes
    a flow: ``forward`` returns the tensor and stores the log-det; ``inverse(z, y=None)``."""

    def __init__(self, in_features):
        super().__init__(in_features)
        self.log_a = nn.Parameter(torch.randn(in_features) * 0.5)
        self.b = nn.Parameter(torch.randn(in_features))

    def forward(self, x, y=None, compute_jacobian=True):
        z = x * self.log_a.exp() + self.b
        if compute_jacobian:
            self._logdet_jacobian = self.log_a.sum()  # one number, as Pixyz's ChannelConv stores it
        return z

    def inverse(self, z, y=None):
        return (z - self.b) * (-self.log_a).exp()


class PixyzScaleByCondition(Flow):
    """A conditional Pixyz-style flow: ``z = x * exp(y)``, log-det per row."""

    def forward(self, x, y=None, compute_jacobian=True):
        if compute_jacobian:
            self._logdet_jacobian = y.sum(-1)
        return x * y.exp()

    def inverse(self, z, y=None):
        return z * (-y).exp()


def test_pixyz_style_flow_alone():
    f = PixyzAffine(3)
    x = torch.randn(4, 3)
    a, b = f.log_a.detach().exp(), f.b.detach()
    z, ld = f.transform(x)
    torch.testing.assert_close(z, x * a + b)
    torch.testing.assert_close(ld, a.log().sum().expand(4))
    xb, ld_inv = f.inverse_transform(z)
    torch.testing.assert_close(xb, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ld_inv, -a.log().sum().expand(4))
    assert f.inverse_transform(z, compute_jacobian=False)[1] is None
    assert isinstance(f(x), torch.Tensor) and torch.is_tensor(f.logdet_jacobian)  # its own Pixyz behaviour


def test_pixyz_style_flow_inside_a_flowlist():
    user = PixyzAffine(3)
    f = FlowList([Reverse(3), user, PlanarFlow(3, constraint_u=True)]).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    z, ld = f.transform(x)
    jac = [torch.autograd.functional.jacobian(lambda v: f(v.view(1, 3)).view(3), x[i]) for i in range(5)]
    torch.testing.assert_close(ld, torch.stack([torch.linalg.slogdet(j)[1] for j in jac]))
    torch.testing.assert_close(f(x), z)
    torch.testing.assert_close(f.logdet_jacobian, ld)
    xb, ld_inv = f.inverse_transform(z)
    torch.testing.assert_close(xb, x)
    torch.testing.assert_close(ld_inv, -ld)
    torch.testing.assert_close(f.inverse(z), x)


def test_pixyz_style_conditional_flow_in_a_flowlist():
    f = FlowList([PixyzScaleByCondition(None), Reverse(2)])
    x, y = torch.randn(4, 2), torch.randn(4, 2)
    z, ld = f.transform(x, y)
    torch.testing.assert_close(z, (x * y.exp()).flip(1))
    torch.testing.assert_close(ld, y.sum(-1))
    torch.testing.assert_close(f.inverse(z, y), x)


def _affine_closed_form(f):
    a, b = f.log_a.detach().exp(), f.b.detach()
    return a, b


def test_pixyz_style_flow_in_an_inverse_transformed_distribution():
    torch.manual_seed(0)
    f = PixyzAffine(2)
    base = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"], name="p_0")
    p = InverseTransformedDistribution(base, FlowList([f]), var=["x"])
    a, b = _affine_closed_form(f)
    exact = torch.distributions.Normal(-b / a, 1 / a)  # z = a x + b ~ N(0, 1)  <=>  x ~ N(-b/a, 1/a)
    x = torch.randn(6, 2)
    torch.testing.assert_close(p.get_log_prob({"x": x}), exact.log_prob(x).sum(-1))
    out, lp = p.sample(batch_n=4, sample_shape=[3], return_log_prob=True)
    assert out["x"].shape == (3, 4, 2)
    torch.testing.assert_close(lp, exact.log_prob(out["x"]).sum(-1))
    torch.testing.assert_close(out["x"], (out["z"] - b) / a)
    # Pixyz's own calls on the distribution
    torch.testing.assert_close(p.forward(x), x * a + b)
    torch.testing.assert_close(p.logdet_jacobian, a.log().sum().expand(6))  # the FlowList's attribute
    torch.testing.assert_close(p.inverse(p.forward(x, compute_jacobian=False)), x)
    # trains by maximum likelihood: gradients reach the user's parameters
    model = ML(p, optimizer_params={"lr": 1e-2})
    model.train({"x": x})
    assert f.log_a.grad is not None and f.log_a.grad.abs().sum() > 0


def test_pixyz_style_flow_in_a_transformed_distribution():
    torch.manual_seed(1)
    f = PixyzAffine(2)
    base = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z0"], name="q_0")
    q = TransformedDistribution(base, f, var=["z"], name="q")
    a, b = _affine_closed_form(f)
    exact = torch.distributions.Normal(b, a)  # z = a z0 + b
    z = torch.randn(5, 2)
    torch.testing.assert_close(q.get_log_prob({"z": z}), exact.log_prob(z).sum(-1))  # inverts the user's flow
    out, lp = q.sample(batch_n=5, return_log_prob=True)
    torch.testing.assert_close(lp, exact.log_prob(out["z"]).sum(-1))
    torch.testing.assert_close(q.logdet_jacobian, a.log().sum().expand(5))  # Pixyz: sample() reports it


def test_pixyz_style_flow_without_inverse_has_none():
    class ForwardOnly(Flow):
        def forward(self, x, y=None, compute_jacobian=True):
            if compute_jacobian:
                self._logdet_jacobian = torch.full((x.shape[0],), x.shape[1] * math.log(2.0))
            return 2 * x

    f = ForwardOnly(2)
    with pytest.raises(NotDefinedError, match="ForwardOnly.*defines forward but no inverse"):
        f.inverse(torch.zeros(1, 2))
    q = TransformedDistribution(Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z0"]), f, var=["z"])
    out, lp = q.sample(batch_n=3, return_log_prob=True)  # no inverse needed for its own samples
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 2.0).log_prob(out["z"]).sum(-1))
    with pytest.raises(NotDefinedError, match="return_log_prob"):
        q.get_log_prob({"z": torch.zeros(3, 2)})


def test_pixyz_style_inverse_raising_not_implemented_is_not_defined():
    class NoInverse(PixyzAffine):
        def inverse(self, z, y=None):
            raise NotImplementedError()

    with pytest.raises(NotDefinedError, match="NoInverse.*inverse is not available"):
        NoInverse(2).inverse_transform(torch.zeros(1, 2))


def test_pixyz_style_volume_preserving_flow_sets_its_logdet_once():
    class Swap(Flow):  # Pixyz's own Permutation stores 0 once, in __init__
        def __init__(self):
            super().__init__(2)
            self._logdet_jacobian = 0

        def forward(self, x, y=None, compute_jacobian=True):
            return x.flip(1)

        def inverse(self, z, y=None):
            return z.flip(1)

    z, ld = Swap().transform(torch.randn(3, 2))
    torch.testing.assert_close(ld, torch.zeros(3))


def test_pixyz_style_flow_mistakes_are_named():
    class NoLogdet(Flow):
        def forward(self, x, y=None, compute_jacobian=True):
            return x

    class Tuple(Flow):
        def forward(self, x, y=None, compute_jacobian=True):
            return x, torch.zeros(x.shape[0])

    class BadShape(Flow):
        def forward(self, x, y=None, compute_jacobian=True):
            self._logdet_jacobian = torch.zeros(x.shape[0] + 1)
            return x

    x = torch.zeros(3, 2)
    with pytest.raises(NotDefinedError, match=r"NoLogdet.*did not set self._logdet_jacobian"):
        NoLogdet(2).transform(x)
    assert NoLogdet(2).transform(x, compute_jacobian=False)[1] is None
    with pytest.raises(TypeError, match=r"Tuple.*returned a tuple.*implement transform"):
        FlowList([Tuple(2)]).transform(x)
    with pytest.raises(ShapeError, match=r"BadShape.*shape \(4,\).*\(3,\)"):
        BadShape(2).transform(x)


def test_subclass_of_a_builtin_overriding_forward_the_pixyz_way():
    class Doubled(Reverse):  # calls the built-in through super(), as a Pixyz subclass would
        def forward(self, x, y=None, compute_jacobian=True):
            z = super().forward(x, y, compute_jacobian) * 2
            if compute_jacobian:
                self._logdet_jacobian = self._logdet_jacobian + x.shape[1] * math.log(2)
            return z

        def inverse(self, z, y=None):
            return super().inverse(z / 2, y)

    f = Doubled(3)
    x = torch.randn(4, 3)
    z, ld = FlowList([f]).transform(x)  # the override is honoured, and does not recurse
    torch.testing.assert_close(z, 2 * x.flip(1))
    torch.testing.assert_close(ld, torch.full((4,), 3 * math.log(2)))
    xb, ld_inv = f.inverse_transform(z)
    torch.testing.assert_close(xb, x)
    torch.testing.assert_close(ld_inv, -ld)


def test_flow_accepts_numpy_sizes_as_pixyz_does():
    np = pytest.importorskip("numpy")
    assert Flow(np.int64(4)).in_features == 4


# ------------------------------------------------------------------------------- Pixyz parity (convention)


def test_flowlist_matches_pixyz_with_the_same_weights():
    net = VecST(3)
    ours = FlowList([AffineCoupling(3, scale_translate_net=net), Reverse(3), PlanarFlow(3)])
    theirs = pzf.FlowList([pzf.AffineCoupling(3, scale_translate_net=net), pzf.Reverse(3), pzf.PlanarFlow(3)])
    theirs.flow_list[2].load_state_dict(ours[2].state_dict())
    x = torch.randn(7, 3)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.logdet_jacobian, theirs.logdet_jacobian, atol=1e-5, rtol=1e-5)
    z = ours(x)
    # Pixyz's PlanarFlow has no inverse; ours solves for it.
    with pytest.raises(NotImplementedError):
        theirs.inverse(z)
    torch.testing.assert_close(ours.inverse(z), x, atol=1e-5, rtol=1e-5)


def test_batchnorm_default_eps_and_set_epsilon_match_pixyz():
    x = torch.randn(50, 4) * 3 + 1
    ours, theirs = BatchNorm1d(4), pzf.BatchNorm1d(4)
    assert ours.eps == epsilon() == pzu.epsilon() == 1e-7
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logdet_jacobian, theirs.logdet_jacobian.expand(50), atol=1e-5, rtol=1e-5)
    old = epsilon()
    try:
        set_epsilon(0.5)
        pzu.set_epsilon(0.5)
        ours, theirs = BatchNorm1d(2), pzf.BatchNorm1d(2)
        assert ours.eps == 0.5 and BatchNorm2d(2).eps == 0.5 and ActNorm2d(2).eps == 0.5
        v = torch.randn(8, 2) * 0.1  # small variance: eps matters
        torch.testing.assert_close(ours(v), theirs(v), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.logdet_jacobian, theirs.logdet_jacobian.expand(8), atol=1e-5, rtol=1e-5)
    finally:
        set_epsilon(old)
        pzu.set_epsilon(old)
    assert BatchNorm1d(2).eps == old and BatchNorm1d(2, eps=1e-3).eps == 1e-3


def test_preprocess_pixyz_convention_matches_pixyz():
    x = torch.rand(3, 1, 4, 4)
    ours, theirs = Preprocess(), pzf.Preprocess()
    torch.manual_seed(5)
    z = ours(x)
    torch.manual_seed(5)
    torch.testing.assert_close(z, theirs(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logdet_jacobian, theirs.logdet_jacobian, atol=1e-3, rtol=1e-5)
