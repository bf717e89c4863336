"""TransformedDistribution and InverseTransformedDistribution: densities against closed forms and Pixyz,
samples with their log-density, no state between calls, amortised posteriors, multi-scale flows, errors."""

from __future__ import annotations

import io

import pixyz.distributions as pzd
import pixyz.flows as pzf
import pytest
import torch
from torch import nn

from pixyz_like.distributions import InverseTransformedDistribution, Normal, TransformedDistribution
from pixyz_like.errors import GraphError, MissingVariableError, NotDefinedError, ShapeError
from pixyz_like.flows import (
    IAF,
    MAF,
    ActNorm2d,
    AffineCoupling,
    ChannelConv,
    FlowList,
    HouseholderFlow,
    PlanarFlow,
    Split,
    Squeeze,
    SylvesterFlow,
)
from pixyz_like.losses import Expectation


def std_normal(var="z", d=2, name="p_0"):
    return Normal(loc=torch.zeros(d), scale=torch.ones(d), var=[var], name=name)


def linear_flow(d=3):
    f = ChannelConv(d)
    with torch.no_grad():
        f.weight.copy_(torch.randn(d, d) + 2 * torch.eye(d))
    return f


class ST(nn.Module):
    def __init__(self, d=2, cond=0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + cond, 16), nn.Tanh(), nn.Linear(16, 2 * d))

    def forward(self, x, y=None):
        s, t = self.net(x if y is None else torch.cat([x, y], -1)).chunk(2, -1)
        return torch.tanh(s), t


# ---------------------------------------------------------------------------------------------- closed forms


def test_transformed_linear_flow_is_gaussian_with_covariance_w_wt():
    f = linear_flow()
    p = TransformedDistribution(std_normal(d=3), f, var=["x"])
    w = f.weight.detach()
    mvn = torch.distributions.MultivariateNormal(torch.zeros(3), covariance_matrix=w @ w.T)
    x = torch.randn(5, 3)
    torch.testing.assert_close(p.get_log_prob({"x": x}), mvn.log_prob(x), atol=1e-4, rtol=1e-5)


def test_inverse_transformed_linear_flow_is_gaussian_with_precision_wt_w():
    f = linear_flow()
    p = InverseTransformedDistribution(std_normal(d=3), f, var=["x"])
    w = f.weight.detach()
    mvn = torch.distributions.MultivariateNormal(torch.zeros(3), precision_matrix=w.T @ w)
    x = torch.randn(5, 3)
    torch.testing.assert_close(p.get_log_prob({"x": x}), mvn.log_prob(x), atol=1e-4, rtol=1e-5)
    z = p.inference({"x": x}, compute_jacobian=True)
    torch.testing.assert_close(z["z"], x @ w.T)
    torch.testing.assert_close(p.logdet_jacobian, torch.linalg.slogdet(w)[1].expand(5))


def test_split_factor_out_gives_exact_density():
    # x in R^2 -> Split keeps x1 (scored by the prior) and scores x2 itself: log p(x) = log N(x; 0, I).
    p = InverseTransformedDistribution(std_normal(d=1), FlowList([Split(2, prior="standard")]), var=["x"])
    x = torch.randn(7, 2)
    torch.testing.assert_close(p.get_log_prob({"x": x}), torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1))


def test_learned_split_in_a_flow_integrates_to_one():
    split = Split(2)
    with torch.no_grad():
        split.net.conv.weight.normal_(0, 0.5)
        split.net.conv.bias.normal_(0, 0.3)
    flow = FlowList([AffineCoupling(2, scale_translate_net=ST(), inverse_mask=True), split])
    p = InverseTransformedDistribution(std_normal(d=1), flow, var=["x"])
    step = 0.03
    axis = torch.arange(-7.0, 7.0, step) + step / 2
    with torch.no_grad():
        mass = p.get_log_prob({"x": torch.cartesian_prod(axis, axis)}).exp().sum() * step**2
    assert abs(mass.item() - 1) < 0.01


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "cls,flow",
    [
        (TransformedDistribution, lambda: IAF(2, (8,))),
        (InverseTransformedDistribution, lambda: MAF(2, (8,))),
        (TransformedDistribution, lambda: PlanarFlow(2, constraint_u=True)),
        (TransformedDistribution, lambda: SylvesterFlow(2)),
    ],
)
def test_sample_comes_with_its_log_density(cls, flow):
    p = cls(std_normal(), flow(), var=["x"])
    out, lp = p.sample(batch_n=3, sample_shape=[4], return_log_prob=True)
    assert out["x"].shape == (4, 3, 2) and out["z"].shape == (4, 3, 2) and lp.shape == (4, 3)
    torch.testing.assert_close(lp, p.get_log_prob({"x": out["x"]}), atol=1e-5, rtol=1e-5)
    only, _ = p.sample(batch_n=2, return_all=False, return_log_prob=True)
    assert set(only) == {"x", "z"}


def test_get_log_prob_keeps_no_state_from_sampling():
    p = TransformedDistribution(std_normal(), IAF(2, (8,)), var=["x"])
    x = torch.randn(5, 2)
    before = p.get_log_prob({"x": x})
    p.sample(batch_n=9)
    torch.testing.assert_close(p.get_log_prob({"x": x}), before)
    # A value equal in shape to the last sample but not that sample is scored on its own.
    s = p.sample(batch_n=5)["x"]
    other = s + 1.0
    torch.testing.assert_close(p.get_log_prob({"x": other}), p.get_log_prob({"x": other.clone()}))
    assert not torch.allclose(p.get_log_prob({"x": other}), p.get_log_prob({"x": s}))


def test_reparameterised_samples_carry_gradients_to_flow_and_prior():
    q0 = Normal(loc=nn.Parameter(torch.zeros(2)).detach().requires_grad_(), scale=torch.ones(2), var=["z"])
    p = TransformedDistribution(q0, IAF(2, (8,)), var=["x"])
    assert p.has_reparam
    out, lp = p.sample(batch_n=4, reparam=True, return_log_prob=True)
    (out["x"].sum() + lp.sum()).backward()
    assert all(par.grad is not None for par in p.flow.parameters())


# ---------------------------------------------------------------------------------------------- conditioning


def test_conditional_inverse_transformed_distribution():
    p = InverseTransformedDistribution(std_normal(), MAF(2, (16,), cond_features=3), var=["x"], cond_var=["y"])
    assert p.cond_var == ["y"] and p.prob_text == "p(x|y)"
    x, y = torch.randn(4, 2), torch.randn(4, 3)
    assert not torch.allclose(p.get_log_prob({"x": x, "y": y}), p.get_log_prob({"x": x, "y": y + 1}))
    out, lp = p.sample({"y": y}, sample_shape=[2], return_log_prob=True)
    assert out["x"].shape == (2, 4, 2)
    torch.testing.assert_close(lp, p.get_log_prob({"x": out["x"], "y": y}), atol=1e-5, rtol=1e-5)
    with pytest.raises(MissingVariableError, match="y"):
        p.get_log_prob({"x": x})


class Encoder(Normal):
    def __init__(self):
        super().__init__(var=["z0"], cond_var=["x"], name="q_0")
        self.net = nn.Linear(3, 4)

    def forward(self, x):
        loc, s = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(s) + 0.1}


class Decoder(Normal):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Linear(2, 3)

    def forward(self, z):
        return {"loc": self.net(z), "scale": torch.ones(1)}


def amortised_posterior():
    flow = FlowList([SylvesterFlow(2, cond_features=3), HouseholderFlow(2, 2, cond_features=3), PlanarFlow(2)])
    return TransformedDistribution(Encoder(), flow, var=["z"], flow_cond_var=["x"], name="q")


@pytest.mark.parametrize("n", [1, 5])
def test_amortised_flow_posterior_in_an_elbo_never_inverts(n, monkeypatch):
    q = amortised_posterior()
    assert q.cond_var == ["x"] and q.prob_factorized_text == "q(z=f_{flow}(z_{0},x))"
    p, prior = Decoder(), std_normal("z", name="p_prior")
    x = torch.randn(6, 3)
    elbo = Expectation(q, p.log_prob() + prior.log_prob() - q.log_prob(), sample_shape=[n])

    def no_inverse(*args, **kwargs):
        raise AssertionError("the flow was inverted")

    monkeypatch.setattr(q.flow, "inverse", no_inverse)
    monkeypatch.setattr(q.flow, "inverse_transform", no_inverse)
    torch.manual_seed(1)
    value = elbo.eval({"x": x})
    torch.manual_seed(1)
    out, lp = q.sample({"x": x}, sample_shape=[n], return_log_prob=True)
    z, xs = out["z"].reshape(n * 6, 2), x.expand(n, 6, 3).reshape(n * 6, 3)  # samples folded into the batch
    manual = (p.get_log_prob({"x": xs, "z": z}) + prior.get_log_prob({"z": z}) - lp.reshape(-1)).view(n, 6).mean(0)
    torch.testing.assert_close(value, manual, atol=1e-5, rtol=1e-5)
    value.mean().backward()
    assert all(par.grad is not None for par in q.flow.parameters())


def test_amortised_posterior_depends_on_its_condition():
    q = amortised_posterior()
    z, x = torch.randn(4, 2), torch.randn(4, 3)
    with pytest.raises(NotDefinedError, match="return_log_prob"):  # PlanarFlow without constraint
        with torch.no_grad():
            q.flow[2].w.copy_(torch.tensor([[1.0, 0.0]]))
            q.flow[2].u.copy_(torch.tensor([[-3.0, 0.0]]))
        q.get_log_prob({"z": z, "x": x})
    q.flow[2].constraint_u = True
    assert not torch.allclose(q.get_log_prob({"z": z, "x": x}), q.get_log_prob({"z": z, "x": x + 1}))


@pytest.mark.parametrize("sample_shape", [[], [3]])
def test_amortised_sylvester_posterior_is_base_density_minus_autograd_logdet(sample_shape, monkeypatch):
    # The VAE set-up of van den Berg et al. (2018): q(z|x) with z = f_2(f_1(z0; x); x), z0 ~ q_0(z0|x).
    q0 = Encoder().double()
    flow = FlowList([SylvesterFlow(2, num_householder=2, cond_features=3) for _ in range(2)]).double()
    q = TransformedDistribution(q0, flow, var=["z"], flow_cond_var=["x"], name="q")
    x = torch.randn(4, 3, dtype=torch.float64)

    # Each data point gets its own flow parameters, and they change the map.
    for layer in flow:
        params = layer.cond_net(x)
        assert params.shape == (4, layer.num_params)
        assert (params[0] - params[1]).abs().max() > 1e-3
    z0 = torch.randn(1, 2, dtype=torch.float64).expand(2, 2)
    assert not torch.allclose(flow(z0, x[:2])[0], flow(z0, x[:2])[1])

    def no_inverse(*args, **kwargs):
        raise AssertionError("the flow was inverted")

    monkeypatch.setattr(q.flow, "inverse", no_inverse)
    monkeypatch.setattr(q.flow, "inverse_transform", no_inverse)
    out, lp = q.sample({"x": x}, sample_shape=sample_shape, return_log_prob=True)
    lead = (*sample_shape, 4)
    assert out["z"].shape == (*lead, 2) and lp.shape == lead
    zs0, zs, xs = out["z0"].reshape(-1, 2), out["z"].reshape(-1, 2), x.expand(*lead, 3).reshape(-1, 3)
    params = q0.get_params({"x": x})
    base = torch.distributions.Normal(params["loc"], params["scale"])
    base_lp = base.log_prob(out["z0"]).sum(-1).reshape(-1)
    for i in range(zs0.shape[0]):

        def f(v, i=i):
            return flow(v.view(1, 2), xs[i : i + 1]).view(2)

        torch.testing.assert_close(f(zs0[i]), zs[i])
        logdet = torch.linalg.slogdet(torch.autograd.functional.jacobian(f, zs0[i]))[1]
        torch.testing.assert_close(lp.reshape(-1)[i], base_lp[i] - logdet)
    # Within one evaluation the loss scores its own sample from the recorded log-density, not by inverting.
    loss = Expectation(q, -q.log_prob(), sample_shape=sample_shape or [1])
    assert torch.isfinite(loss.eval({"x": x})).all()


# ---------------------------------------------------------------------------------------------- images


def test_glow_like_multiscale_flow_on_images():
    flow = FlowList(
        [
            Squeeze(),
            ActNorm2d(4),
            ChannelConv(4, decomposed=True),
            AffineCoupling(4, scale_net=nn.Conv2d(4, 4, 3, padding=1), translate_net=nn.Conv2d(4, 4, 1)),
            Split(4),
        ]
    )
    prior = Normal(loc=torch.zeros(2, 2, 2), scale=torch.ones(2, 2, 2), var=["z"])
    p = InverseTransformedDistribution(prior, flow, var=["x"], features_shape=[1, 4, 4])
    x = torch.randn(8, 1, 4, 4)
    lp = p.get_log_prob({"x": x})  # the first call initialises ActNorm
    assert lp.shape == (8,) and torch.isfinite(lp).all()
    out, lp = p.sample(batch_n=3, sample_shape=[2], return_log_prob=True)
    assert out["x"].shape == (2, 3, 1, 4, 4) and out["z"].shape == (2, 3, 2, 2, 2)
    torch.testing.assert_close(lp, p.get_log_prob({"x": out["x"]}), atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- misc


def test_text_matches_pixyz():
    ours = InverseTransformedDistribution(std_normal(), MAF(2, (4,)), var=["x"])
    assert ours.prob_joint_factorized_and_text == "p(x) = p(x=f^{-1}_{flow}(z))"
    theirs = pzd.InverseTransformedDistribution(
        pzd.Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"]), pzf.FlowList([pzf.Reverse(2)]), var=["x"]
    )
    assert ours.prob_factorized_text == theirs.prob_factorized_text
    assert "flow" in str(ours) and "MAF" in str(ours)


def test_log_prob_matches_pixyz_for_a_realnvp():
    nets = [ST(), ST()]
    ours = InverseTransformedDistribution(
        std_normal(),
        FlowList([AffineCoupling(2, scale_translate_net=n, inverse_mask=bool(i)) for i, n in enumerate(nets)]),
        var=["x"],
    )
    prior = pzd.Normal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z"], features_shape=[2])
    theirs = pzd.InverseTransformedDistribution(
        prior,
        pzf.FlowList([pzf.AffineCoupling(2, scale_translate_net=n, inverse_mask=bool(i)) for i, n in enumerate(nets)]),
        var=["x"],
    )
    x = torch.randn(6, 2)
    torch.testing.assert_close(ours.get_log_prob({"x": x}), theirs.get_log_prob({"x": x}))


def test_save_load_round_trip():
    p = InverseTransformedDistribution(std_normal(), MAF(2, (8,)), var=["x"])
    buf = io.BytesIO()
    torch.save(p.state_dict(), buf)
    buf.seek(0)
    q = InverseTransformedDistribution(std_normal(), MAF(2, (8,)), var=["x"])
    q.load_state_dict(torch.load(buf))
    x = torch.randn(4, 2)
    torch.testing.assert_close(q.get_log_prob({"x": x}), p.get_log_prob({"x": x}))


def test_features_shape_is_inferred_for_vector_flows_and_folds_sample_dims():
    p = InverseTransformedDistribution(std_normal(), MAF(2, (8,)), var=["x"])
    assert p.features_shape == (2,)
    x = torch.randn(3, 4, 2)
    torch.testing.assert_close(p.get_log_prob({"x": x}), p.get_log_prob({"x": x.reshape(12, 2)}).reshape(3, 4))


def test_errors():
    with pytest.raises(GraphError, match="one variable"):
        TransformedDistribution(std_normal("a") * std_normal("b"), IAF(2, (4,)), var=["x"])
    with pytest.raises(GraphError, match="also the prior's variable"):
        TransformedDistribution(std_normal(), IAF(2, (4,)), var=["z"])
    with pytest.raises(TypeError, match="Flow"):
        TransformedDistribution(std_normal(), nn.Linear(2, 2), var=["x"])
    p = InverseTransformedDistribution(std_normal(), MAF(2, (4,)), var=["x"])
    with pytest.raises(NotDefinedError, match="sum_features"):
        p.get_log_prob({"x": torch.zeros(3, 2)}, sum_features=False)
    with pytest.raises(ShapeError, match=r"MAF\(in_features=2\).*\(batch, 2\).*\(3, 5\)"):
        p.get_log_prob({"x": torch.zeros(3, 5)})
    q = InverseTransformedDistribution(std_normal(), MAF(2, (4,)), var=["x"], features_shape=[2])
    with pytest.raises(ShapeError, match=r"p\(x\) \(InverseTransformedDistribution\).*\(3, 5\)"):
        q.get_log_prob({"x": torch.zeros(3, 5)})
    with pytest.raises(TypeError, match="unknown option"):
        p.sample(batch_n=2, return_log_prob=True, compute_jacobian=True)


# ------------------------------------------------------------------------------- Pixyz's calling convention


def _realnvp_pair():
    nets = [ST(), ST()]
    ours = FlowList([AffineCoupling(2, scale_translate_net=n, inverse_mask=bool(i)) for i, n in enumerate(nets)])
    theirs = pzf.FlowList(
        [pzf.AffineCoupling(2, scale_translate_net=n, inverse_mask=bool(i)) for i, n in enumerate(nets)]
    )
    p = InverseTransformedDistribution(Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2]), ours, var=["x"])
    prior = pzd.Normal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z"], features_shape=[2])
    return p, pzd.InverseTransformedDistribution(prior, theirs, var=["x"])


def test_inverse_transformed_distribution_methods_match_pixyz():
    p, theirs = _realnvp_pair()
    x = torch.randn(6, 2)
    z = p.forward(x)
    torch.testing.assert_close(z, theirs.forward(x))
    torch.testing.assert_close(p.logdet_jacobian, theirs.logdet_jacobian)
    torch.testing.assert_close(p.inverse(z), theirs.inverse(z))
    torch.testing.assert_close(p.forward(x, compute_jacobian=False), theirs.forward(x, compute_jacobian=False))
    ours_inf, theirs_inf = p.inference({"x": x}), theirs.inference({"x": x})
    assert set(ours_inf) == set(theirs_inf) == {"x", "z"}
    torch.testing.assert_close(ours_inf["z"], theirs_inf["z"])
    assert set(p.inference({"x": x}, return_all=False)) == {"z"}
    p.inference({"x": x}, compute_jacobian=True)
    theirs.inference({"x": x}, compute_jacobian=True)
    torch.testing.assert_close(p.logdet_jacobian, theirs.logdet_jacobian)
    torch.testing.assert_close(p.get_log_prob({"x": x}), theirs.get_log_prob({"x": x}))


def test_inverse_transformed_sample_return_hidden():
    p, _ = _realnvp_pair()
    assert set(p.sample(batch_n=3)) == {"x", "z"}
    assert set(p.sample(batch_n=3, return_hidden=False)) == {"x"}
    assert set(p.sample(batch_n=3, return_hidden=False, return_all=False)) == {"x"}


def test_transformed_distribution_methods_and_options_match_pixyz():
    ours_flow = FlowList([PlanarFlow(2), PlanarFlow(2)])
    theirs_flow = pzf.FlowList([pzf.PlanarFlow(2), pzf.PlanarFlow(2)])
    theirs_flow.load_state_dict(ours_flow.state_dict())
    q = TransformedDistribution(Normal(loc=0.0, scale=1.0, var=["z0"], features_shape=[2]), ours_flow, var=["z"])
    prior = pzd.Normal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z0"], features_shape=[2])
    theirs = pzd.TransformedDistribution(prior, theirs_flow, var=["z"])
    z0 = torch.randn(5, 2)
    torch.testing.assert_close(q.forward(z0), theirs.forward(z0))
    # Pixyz adds epsilon() inside its log|det| (see docs/pixyz.md); the values agree to that.
    torch.testing.assert_close(q.logdet_jacobian, theirs.logdet_jacobian, atol=1e-5, rtol=1e-5)
    out = q.sample(batch_n=4)  # compute_jacobian=True, Pixyz's default: the sample's log-det is reported
    _, ld = ours_flow.transform(out["z0"])
    torch.testing.assert_close(q.logdet_jacobian, ld)
    lp_prior = torch.distributions.Normal(0.0, 1.0).log_prob(out["z0"]).sum(-1)
    torch.testing.assert_close(q.get_log_prob(out, compute_jacobian=True), lp_prior - ld, atol=1e-4, rtol=1e-4)
    with pytest.raises(TypeError, match="unknown option"):
        q.sample(batch_n=2, return_hidden=False)


def _no_logdet_flow():
    from pixyz_like.flows import Flow

    class NoLogdet(Flow):
        """A user flow that returns no log-determinant even when one is asked for."""

        def transform(self, x, y=None, compute_jacobian=True):
            return 2 * x, None

        def inverse_transform(self, z, y=None, compute_jacobian=True):
            return z / 2, None

    return NoLogdet(2)


@pytest.mark.parametrize("kind", ["transformed", "inverse"])
def test_a_flow_returning_no_logdet_when_asked_is_a_named_error(kind):
    # A flow whose transform returns (z, None) with compute_jacobian=True used to fail with a raw
    # AttributeError ('NoneType' object has no attribute 'reshape') deep inside the distribution.
    cls = TransformedDistribution if kind == "transformed" else InverseTransformedDistribution
    p = cls(std_normal("z0"), _no_logdet_flow(), var=["x"])
    named = r"p\(x\) \(\w*TransformedDistribution\): its flow's \w+ returned no log-determinant"
    with pytest.raises(NotDefinedError, match=named):
        p.get_log_prob({"x": torch.randn(3, 2)})
    with pytest.raises(NotDefinedError, match="no log-determinant"):
        p.sample(batch_n=3)
