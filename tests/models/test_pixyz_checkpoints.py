"""``Model.load`` reads files written by Pixyz 0.3.3's ``Model.save`` (issue 8), and Pixyz reads ours.

Pixyz saves ``{"distributions": state_dict}`` with ``torch.save``; it names the factors of a product
``_graph.<i>`` in the order they were multiplied, where pixyz_like keeps them as ``_factors.<j>`` in
sampling order. Each test builds the same model in both libraries (the same code, only the imports
differ), trains Pixyz's, saves it with Pixyz, loads it here and compares the networks' outputs.
"""

from __future__ import annotations

import pixyz.distributions as pzd  # the oracle: Pixyz 0.3.3 is installed in the test environment
import pixyz.losses as pzl
import pixyz.models as pzm
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import pixyz_like.distributions as ld
import pixyz_like.losses as ll
import pixyz_like.models as lm
from pixyz_like.errors import CheckpointError

X, Z, H = 6, 2, 8


def vae_parts(dists):
    class Inference(dists.Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.fc1 = nn.Linear(X, H)
            self.fc21 = nn.Linear(H, Z)
            self.fc22 = nn.Linear(H, Z)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            return {"loc": self.fc21(h), "scale": F.softplus(self.fc22(h))}

    class Generator(dists.Bernoulli):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.fc1 = nn.Linear(Z, H)
            self.fc2 = nn.Linear(H, X)

        def forward(self, z):
            return {"probs": torch.sigmoid(self.fc2(F.relu(self.fc1(z))))}

    prior = dists.Normal(loc=torch.tensor(0.), scale=torch.tensor(1.), var=["z"], features_shape=[Z],
                         name="p_{prior}")
    return Inference(), Generator(), prior


def data(n=16, seed=0):
    return (torch.rand(n, X, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def train_pixyz(model, steps=5):
    for i in range(steps):
        model.train({"x": data(seed=i)})


def outputs(q, p):
    x, z = data(seed=99), torch.randn(5, Z, generator=torch.Generator().manual_seed(1))
    return q.sample_mean({"x": x}), q.get_params({"x": x})["scale"], p.sample_mean({"z": z})


def assert_same_outputs(theirs, ours):
    for a, b in zip(theirs, ours, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_a_pixyz_vae_file_loads_and_gives_pixyz_outputs(tmp_path):
    torch.manual_seed(0)
    q, p, prior = vae_parts(pzd)
    theirs = pzm.VAE(q, p, regularizer=pzl.KullbackLeibler(q, prior), optimizer_params={"lr": 1e-2})
    train_pixyz(theirs)
    theirs.save(str(tmp_path / "pixyz.pt"))

    torch.manual_seed(1)  # other initial weights: everything must come from the file
    q2, p2, prior2 = vae_parts(ld)
    ours = lm.VAE(q2, p2, regularizer=ll.KullbackLeibler(q2, prior2), optimizer_params={"lr": 1e-2})
    ours.load(tmp_path / "pixyz.pt")
    assert_same_outputs(outputs(q, p), outputs(q2, p2))
    # The same test loss with the same noise.
    torch.manual_seed(3)
    expected = theirs.test({"x": data(seed=7)})
    torch.manual_seed(3)
    torch.testing.assert_close(ours.test({"x": data(seed=7)}), expected)
    ours.train({"x": data()})  # and it trains on (the optimizer starts afresh, as after Pixyz's load)


def test_a_pixyz_joint_loads_with_its_factors_matched(tmp_path):
    """VI with the joint p(x|z) p(z) trained as one distribution: Pixyz names its factors in
    multiplication order (decoder first), pixyz_like in sampling order (prior first)."""
    torch.manual_seed(0)
    q, p, prior = vae_parts(pzd)
    prior.loc.fill_(0.25)  # a constant that differs from the default, to see it loaded
    theirs = pzm.VI(p * prior, q, optimizer_params={"lr": 1e-2})
    train_pixyz(theirs)
    saved = theirs.distributions.state_dict()
    assert "0._graph.0.fc1.weight" in saved and "0._graph.1.loc" in saved
    theirs.save(str(tmp_path / "pixyz_vi.pt"))

    torch.manual_seed(1)
    q2, p2, prior2 = vae_parts(ld)
    ours = lm.VI(p2 * prior2, q2, optimizer_params={"lr": 1e-2})
    ours.load(tmp_path / "pixyz_vi.pt")
    assert_same_outputs(outputs(q, p), outputs(q2, p2))
    torch.testing.assert_close(prior2.loc, torch.full_like(prior2.loc, 0.25), rtol=0, atol=0)


def test_factors_alike_are_matched_only_when_it_cannot_matter(tmp_path):
    """Two priors with the same parameter names and shapes: equal values load (either assignment is
    the same state); different values are refused rather than risk swapping them."""
    for differ in (False, True):
        a = pzd.Normal(loc=torch.zeros(Z), scale=torch.ones(Z), var=["a"], name="pa")
        b = pzd.Normal(loc=torch.zeros(Z), scale=torch.ones(Z), var=["b"], name="pb")
        if differ:
            b.loc.fill_(3.0)
        theirs = {"distributions": nn.ModuleList([a * b]).state_dict()}
        torch.save(theirs, tmp_path / "pair.pt")
        a2 = ld.Normal(loc=torch.zeros(Z), scale=torch.ones(Z), var=["a"], name="pa")
        b2 = ld.Normal(loc=torch.zeros(Z), scale=torch.ones(Z), var=["b"], name="pb")
        a2.loc, b2.loc = nn.Parameter(a2.loc.clone() - 1), nn.Parameter(b2.loc.clone() - 1)
        model = lm.Model(-(a2 * b2).log_prob().mean(), distributions=[a2 * b2])
        if differ:
            with pytest.raises(CheckpointError, match="same parameter names and shapes but different values"):
                model.load(tmp_path / "pair.pt")
            assert torch.equal(b2.loc, torch.full_like(b2.loc, -1.0))  # nothing loaded
        else:
            model.load(tmp_path / "pair.pt")
            assert torch.equal(a2.loc, torch.zeros_like(a2.loc)) and torch.equal(b2.loc, torch.zeros_like(b2.loc))


def test_another_architecture_from_pixyz_is_refused(tmp_path):
    torch.manual_seed(0)
    q, p, prior = vae_parts(pzd)
    pzm.VAE(q, p, regularizer=pzl.KullbackLeibler(q, prior)).save(str(tmp_path / "pixyz.pt"))
    q2, p2, prior2 = vae_parts(ld)
    q2.fc1 = nn.Linear(X, H + 1)
    q2.fc21, q2.fc22 = nn.Linear(H + 1, Z), nn.Linear(H + 1, Z)
    ours = lm.VAE(q2, p2, regularizer=ll.KullbackLeibler(q2, prior2))
    with pytest.raises(CheckpointError, match=r"pixyz.pt \(a Pixyz checkpoint\) belongs to another model.*0.fc1"):
        ours.load(tmp_path / "pixyz.pt")
    torch.save({"distributions": {"0.fc1.weight": "not a tensor"}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: 'distributions' must map names to tensors"):
        ours.load(tmp_path / "bad.pt")


def test_pixyz_loads_a_file_written_here(tmp_path):
    torch.manual_seed(0)
    q2, p2, prior2 = vae_parts(ld)
    ours = lm.VAE(q2, p2, regularizer=ll.KullbackLeibler(q2, prior2), optimizer_params={"lr": 1e-2})
    for i in range(5):
        ours.train({"x": data(seed=i)})
    ours.save(tmp_path / "ours.pt")
    torch.manual_seed(1)
    q, p, prior = vae_parts(pzd)
    theirs = pzm.VAE(q, p, regularizer=pzl.KullbackLeibler(q, prior))
    theirs.load(str(tmp_path / "ours.pt"))  # Pixyz's own torch.load(path)["distributions"]
    assert_same_outputs(outputs(q2, p2), outputs(q, p))
