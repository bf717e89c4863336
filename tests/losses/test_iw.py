"""IWAE and log_marginal on linear-Gaussian models, whose log p(x) and ELBO are known exactly.

z ~ N(0, I), x | z ~ N(W z + b, s^2 I)  =>  x ~ N(b, W W^T + s^2 I); the posterior is Gaussian with
precision I + W^T W / s^2. The proposal q is that posterior with a shifted mean and inflated scale.
"""

import math

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Normal
from pixyz_like.errors import MissingVariableError, VariableMismatchError
from pixyz_like.losses import ELBO, IWAE, log_marginal

DZ, DX, S = 2, 3, 0.5


def problem(prior_var=1.0):
    g = torch.Generator().manual_seed(123)
    W = torch.randn(DX, DZ, generator=g)
    b = torch.randn(DX, generator=g)
    precision = torch.eye(DZ) / prior_var + W.T @ W / S**2
    cov = torch.linalg.inv(precision)
    return W, b, cov


class Decoder(Normal):
    def __init__(self, W, b, cond="z"):
        super().__init__(var=["x"], cond_var=[cond], name="p")
        self.W = nn.Parameter(W.clone())
        self.b = b
        self.cond = cond

    def forward(self, **inputs):
        z = inputs[self.cond]
        return {"loc": z @ self.W.T + self.b, "scale": torch.full((1, DX), S)}


class Encoder(Normal):
    """q(z|x): the exact posterior mean shifted by 0.1, the exact marginal scales inflated by 1.3."""

    def __init__(self, W, b, cov, var="z"):
        super().__init__(var=[var], cond_var=["x"], name="q")
        self.A = nn.Parameter(cov @ W.T / S**2)
        self.b = b
        self.register_buffer("sd", (cov.diagonal().sqrt() * 1.3).unsqueeze(0))

    def forward(self, x):
        return {"loc": (x - self.b) @ self.A.T + 0.1, "scale": self.sd}


class Halve(Normal):
    def __init__(self):
        super().__init__(var=["z2"], cond_var=["z1"], name="q")

    def forward(self, z1):
        return {"loc": z1 / 2, "scale": torch.full((1, DZ), 0.5**0.5)}


def model():
    W, b, cov = problem()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[DZ], name="p_{prior}")
    decoder, encoder = Decoder(W, b), Encoder(W, b, cov)
    exact = torch.distributions.MultivariateNormal(b, W @ W.T + S**2 * torch.eye(DX))
    return decoder * prior, encoder, exact


def analytic_elbo(W, b, encoder, x):
    with torch.no_grad():
        params = encoder.forward(x)
    m, sd = params["loc"], params["scale"].expand_as(params["loc"])
    resid = x - m @ W.T - b
    tr = ((W**2) @ (sd**2).T).sum(0)  # tr(W diag(sd^2) W^T) per data point
    rec = -DX * (math.log(S) + 0.5 * math.log(2 * math.pi)) - ((resid**2).sum(-1) + tr) / (2 * S**2)
    prior = -0.5 * DZ * math.log(2 * math.pi) - 0.5 * ((m**2).sum(-1) + (sd**2).sum(-1))
    entropy = sd.log().sum(-1) + 0.5 * DZ * (1 + math.log(2 * math.pi))
    return rec + prior + entropy


@pytest.mark.parametrize("chunk", [None, 333, 10_000])
def test_log_marginal_is_within_005_nats_of_exact(chunk):
    p, q, exact = model()
    x = exact.sample((20,))
    est = log_marginal(p, q, {"x": x}, k=5000, chunk=chunk)
    assert est.shape == (20,) and not est.requires_grad
    assert (est - exact.log_prob(x)).abs().max().item() < 0.05


def test_log_marginal_with_a_hierarchical_proposal():
    # z2 ~ N(0, I), z1 | z2 ~ N(z2, I), x | z1 ~ N(W z1 + b, s^2 I)  =>  x ~ N(b, 2 W W^T + s^2 I).
    W, b, cov = problem(prior_var=2.0)
    top = Normal(loc=0.0, scale=1.0, var=["z2"], features_shape=[DZ], name="p_{2}")
    mid = Normal(loc="z2", scale=1.0, var=["z1"], cond_var=["z2"], name="p_{1}")
    p = Decoder(W, b, cond="z1") * mid * top
    # q(z1|x) q(z2|z1), the second factor exact: z2 | z1 ~ N(z1 / 2, 1/2). A joint proposal.
    q = Encoder(W, b, cov, var="z1") * Halve()
    exact = torch.distributions.MultivariateNormal(b, 2 * W @ W.T + S**2 * torch.eye(DX))
    x = exact.sample((10,))
    est = log_marginal(p, q, {"x": x}, k=5000)
    assert (est - exact.log_prob(x)).abs().max().item() < 0.05


def test_iwae_rises_with_k_from_the_elbo_and_stays_below_log_px():
    p, q, exact = model()
    W, b, _ = problem()
    x = exact.sample((50,))
    truth = exact.log_prob(x)
    means, ses = {}, {}
    for k in (1, 10, 100):
        bound = IWAE(p, q, k=k)
        with torch.no_grad():
            reps = torch.stack([bound.eval({"x": x}) for _ in range(100)])  # (reps, points)
        # Per data point: never above log p(x) beyond Monte Carlo error.
        se_point = reps.std(0) / 10
        assert (reps.mean(0) <= truth + 4 * se_point + 1e-4).all()
        means[k] = reps.mean().item()
        ses[k] = (reps.mean(1).std() / 10).item()
    # k=1 is the ELBO in expectation (closed form for this model).
    elbo = analytic_elbo(W, b, q, x).mean().item()
    assert abs(means[1] - elbo) < 4 * ses[1]
    assert means[1] + 4 * ses[1] < means[10] and means[10] + 4 * ses[10] < means[100]
    assert means[100] < truth.mean().item()
    # The ELBO loss of the library agrees with the closed form too.
    with torch.no_grad():
        ours = ELBO(p, q, sample_shape=[2000]).eval({"x": x}).mean().item()
    assert ours == pytest.approx(elbo, abs=0.05)


def test_logsumexp_is_taken_per_data_point():
    p, q, exact = model()
    x = exact.sample((4,))
    bound, out = IWAE(p, q, k=7).eval({"x": x}, return_dict=True)
    z = out["z"]
    assert z.shape == (7, 4, DZ)
    with torch.no_grad():
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        lik = torch.distributions.Normal(z @ p.factors()[-1].W.T + p.factors()[-1].b, S).log_prob(x).sum(-1)
        params = q.forward(x)
        lq = torch.distributions.Normal(params["loc"], params["scale"]).log_prob(z).sum(-1)
        manual = torch.logsumexp(lik + prior - lq, dim=0) - math.log(7)  # over the 7 samples, per point
    torch.testing.assert_close(bound.detach(), manual, rtol=1e-5, atol=1e-5)


def test_iwae_trains_both_networks():
    p, q, exact = model()
    loss = -IWAE(p, q, k=5).mean()
    loss.eval({"x": exact.sample((8,))}).backward()
    assert q.A.grad.abs().sum() > 0
    assert p.factors()[-1].W.grad.abs().sum() > 0


def test_prior_as_proposal_and_printing():
    p, _, exact = model()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[DZ], name="p_{prior}")
    x = exact.sample((3,))
    assert IWAE(p, prior, k=4).eval({"x": x}).shape == (3,)
    assert torch.isfinite(log_marginal(p, prior, {"x": x}, k=100)).all()
    _, q, _ = model()
    assert str(IWAE(p, q, k=5)) == r"\log \frac{1}{5} \sum_{i=1}^{5} \frac{p(x,z^{(i)})}{q(z^{(i)}|x)}"


def test_errors():
    p, q, exact = model()
    with pytest.raises(ValueError, match="k must be"):
        IWAE(p, q, k=0)
    with pytest.raises(ValueError, match="chunk"):
        log_marginal(p, q, {"x": exact.sample((2,))}, chunk=0)
    stranger = Normal(loc="x", scale=1.0, var=["w"], cond_var=["x"], name="r")
    with pytest.raises(VariableMismatchError, match="w"):
        IWAE(p, stranger)
    with pytest.raises(MissingVariableError, match="x"):
        log_marginal(p, q, {"y": torch.zeros(2, DX)})


def test_log_marginal_chunks_reuse_folded_inputs_with_the_same_estimate_as_a_hand_loop():
    """Chunks of one size share the repeated inputs; the last, smaller chunk gets its own; the estimate is
    draw for draw the hand-written chunked loop's (same seed, same order of draws)."""
    import math

    from pixyz_like.distributions import Normal
    from pixyz_like.losses import log_marginal

    torch.manual_seed(3)
    d, batch, k, chunk = 3, 5, 23, 4
    w = torch.randn(d, d)
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[d], name="p_{prior}")

    class Dec(Normal):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")

        def forward(self, z):
            return {"loc": z @ w, "scale": 0.5}

    q = Normal(loc="x", scale=0.8, var=["z"], cond_var=["x"], name="q")
    x = torch.randn(batch, d)
    torch.manual_seed(0)
    ours = log_marginal(Dec() * prior, q, {"x": x}, k=k, chunk=chunk)
    torch.manual_seed(0)
    n01 = torch.distributions.Normal(0.0, 1.0)
    chunks = []
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        z = x + 0.8 * torch.randn(c, batch, d)
        log_w = (
            torch.distributions.Normal(z @ w, 0.5).log_prob(x).sum(-1)
            + n01.log_prob(z).sum(-1)
            - torch.distributions.Normal(x, 0.8).log_prob(z).sum(-1)
        )
        chunks.append(log_w)
    expected = torch.logsumexp(torch.cat(chunks), 0) - math.log(k)
    torch.testing.assert_close(ours, expected)
