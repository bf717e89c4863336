"""Model.train/test/fit refuse what would silently corrupt a run (issue 9, causes 1, 4 and 5), and pass
the loss's own options through (issue 8).

* a step whose loss or gradients are not finite never reaches the optimizer: weights and optimizer
  state are unchanged;
* clipping thresholds that are not positive finite numbers are refused (Pixyz ignored 0 and reversed
  the gradients for a negative threshold);
* a distribution the loss never uses is reported; an empty batch and ``max_steps=-1`` are refused;
* ``batch_n``, ``sample_mean``, ``test_mode`` reach ``loss.eval``; ``batch_size`` still raises.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like import set_validation
from pixyz_like.distributions import Normal
from pixyz_like.errors import (
    NonFiniteGradientError,
    NonFiniteLossError,
    OptionError,
    PixyzLikeError,
    ShapeError,
)
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import ML, VAE, VI, Model
from pixyz_like.models import model as model_module

from ..quickstart import make


def small_vae(**kw):
    p, q, prior = make(x_dim=6, z_dim=2, hidden=8)
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    return Model(loss, distributions=[p, q], **kw), (p, q, prior)


def snapshot(model: Model):
    weights = {k: v.detach().clone() for k, v in model.distributions.state_dict().items()}
    return weights, copy.deepcopy(model.optimizer.state_dict())


def assert_unchanged(model: Model, before):
    weights, opt = before
    for k, v in model.distributions.state_dict().items():
        assert torch.equal(v, weights[k]), k
    now = model.optimizer.state_dict()
    assert now["param_groups"] == opt["param_groups"]
    assert now["state"].keys() == opt["state"].keys()
    for i, s in opt["state"].items():
        for name, v in s.items():
            assert torch.equal(torch.as_tensor(now["state"][i][name]), torch.as_tensor(v)), (i, name)


def binary(n=16, seed=0):
    return (torch.rand(n, 6, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


# ---------------------------------------------------------------------- cause 1: non-finite steps
@pytest.mark.parametrize("validation", [True, False])
def test_one_nan_in_the_data_changes_no_weight_and_no_optimizer_state(validation):
    model, _ = small_vae(optimizer_params={"lr": 1e-2})
    model.train({"x": binary()})  # Adam has moments now: they must not move either
    before = snapshot(model)
    x = binary(seed=1)
    x[3, 2] = float("nan")
    with set_validation(validation):
        # With validation on the distribution refuses the NaN; with it off the loss is NaN and
        # Model.train refuses the step. Either way: a named error, nothing moved.
        expected = PixyzLikeError if validation else NonFiniteLossError
        with pytest.raises(expected) as info:
            model.train({"x": x})
    if not validation:
        assert "'x' (1 non-finite of 96, first at index (3, 2))" in str(info.value)
        assert "step was not taken" in str(info.value)
    assert_unchanged(model, before)
    assert all(p.grad is None for p in model.distributions.parameters())
    # Training goes on from the same state with good data.
    assert math.isfinite(model.train({"x": binary(seed=2)}).item())


def test_infinite_loss_from_finite_data_is_refused_before_the_step():
    """Data finite but so large that the Gaussian log-density overflows: the loss is inf."""
    p = Normal(loc=torch.zeros(2), scale=1.0, var=["x"], name="p")
    p.loc = nn.Parameter(p.loc.clone())
    model = Model(-p.log_prob().mean(), distributions=[p], optimizer=torch.optim.SGD, optimizer_params={"lr": 0.1})
    before = snapshot(model)
    with pytest.raises(NonFiniteLossError, match=r"Model.train\(\): the loss .* is inf.*step was not taken"):
        model.train({"x": torch.full((4, 2), 1e30)})
    assert_unchanged(model, before)


class SqrtAtZero(Normal):
    """loc = sqrt(a) with a = 0: the loss is finite, its gradient with respect to ``a`` is infinite."""

    def __init__(self):
        super().__init__(var=["x"], name="p", features_shape=[2])
        self.a = nn.Parameter(torch.zeros(2))
        self.b = nn.Parameter(torch.zeros(2))

    def forward(self):
        return {"loc": (self.a.sqrt() + self.b).unsqueeze(0), "scale": torch.ones(1, 2)}


@pytest.mark.parametrize("clip", [None, 1.0])
def test_non_finite_gradient_is_refused_before_the_step(clip):
    p = SqrtAtZero()
    model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1}, clip_grad_norm=clip)
    before = snapshot(model)
    with pytest.raises(NonFiniteGradientError, match=r"gradients of \['0.a'\] are not.*step was not taken"):
        model.train({"x": torch.ones(3, 2)})
    assert_unchanged(model, before)
    assert issubclass(NonFiniteGradientError, NonFiniteLossError)


def test_fit_refuses_a_non_finite_gradient_before_the_step():
    p = SqrtAtZero()
    model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1})
    before = snapshot(model)
    loader = DataLoader(TensorDataset(torch.ones(8, 2)), batch_size=4)
    with pytest.raises(NonFiniteGradientError, match=r"Model.fit\(\): at step 1 \(epoch 1\)"):
        model.fit(loader, 1, keys=("x",), progress=False)
    assert_unchanged(model, before)


def test_the_finiteness_check_is_one_fused_reduction(monkeypatch):
    """The happy path checks every gradient and the loss in one fused call (GradScaler's overflow
    check, with a scale of 1), no per-parameter test; with norm clipping, the clipping's norm serves."""
    model, _ = small_vae()
    norms, checks = [], []
    real_norm, real_check = torch._foreach_norm, torch._amp_foreach_non_finite_check_and_unscale_
    monkeypatch.setattr(torch, "_foreach_norm", lambda g, *a, **k: (norms.append(len(g)), real_norm(g, *a, **k))[1])
    monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_",
                        lambda g, *a, **k: (checks.append(len(g)), real_check(g, *a, **k))[1])
    model.train({"x": binary()})
    n = len(list(model.distributions.parameters()))
    assert (norms, checks) == ([], [n + 1])
    norms.clear(), checks.clear()
    model.clip_norm = 10.0
    model.train({"x": binary()})
    assert (norms, checks) == ([n], [])  # the clipping's own


def test_the_fused_finiteness_check_leaves_the_gradients_unchanged(monkeypatch):
    """The check multiplies by 1 in place: the step taken is the one the gradients ask for."""
    model, _ = small_vae()
    seen = {}
    real_step = model.optimizer.step

    def step(*a, **k):
        seen.update({i: p.grad.clone() for i, p in enumerate(model.distributions.parameters())})
        return real_step(*a, **k)

    x = binary()
    torch.manual_seed(3)
    model.loss_cls.eval({"x": x}).backward()
    expected = {i: p.grad.clone() for i, p in enumerate(model.distributions.parameters())}
    monkeypatch.setattr(model.optimizer, "step", step)
    torch.manual_seed(3)
    model.train({"x": x})
    assert seen.keys() == expected.keys()
    assert all(torch.equal(seen[i], expected[i]) for i in expected)


# ---------------------------------------------------------------------- cause 4: clipping thresholds
BAD_THRESHOLDS = [0, 0.0, -1.0, -0.01, float("nan"), float("inf"), "1.0", True, [1.0]]


@pytest.mark.parametrize("option", ["clip_grad_norm", "clip_grad_value"])
@pytest.mark.parametrize("value", BAD_THRESHOLDS, ids=repr)
def test_bad_clipping_threshold_is_refused_at_construction(option, value):
    with pytest.raises(OptionError, match=rf"Model: {option} must be a positive"):
        small_vae(**{option: value})
    p, q, prior = make(x_dim=6, z_dim=2, hidden=8)
    with pytest.raises(OptionError, match=option):
        VAE(q, p, regularizer=KullbackLeibler(q, prior), **{option: value})


@pytest.mark.parametrize("attribute, option", [("clip_norm", "clip_grad_norm"), ("clip_value", "clip_grad_value")])
def test_bad_clipping_threshold_set_later_is_refused(attribute, option):
    model, _ = small_vae(**{option: 1})
    assert getattr(model, attribute) == 1.0
    with pytest.raises(OptionError, match=option):
        setattr(model, attribute, -1.0)
    assert getattr(model, attribute) == 1.0
    setattr(model, attribute, None)
    assert getattr(model, attribute) is None


def test_norm_clipping_bounds_the_update():
    model, _ = small_vae(clip_grad_norm=1e-3, optimizer=torch.optim.SGD, optimizer_params={"lr": 1.0})
    before = [t.detach().clone() for t in model.distributions.parameters()]
    model.train({"x": binary()})
    step = torch.cat([(a - b).flatten() for a, b in zip(before, model.distributions.parameters(), strict=True)])
    assert 0 < step.norm() <= 1e-3 * (1 + 1e-5)


# ---------------------------------------------------------------------- cause 5: silent no-ops
def test_a_distribution_the_loss_never_uses_is_reported():
    p, q, prior = make(x_dim=6, z_dim=2, hidden=8)
    stray = Normal(loc="x", scale=1.0, var=["w"], cond_var=["x"], name="r")
    stray.net = nn.Linear(2, 2)
    with pytest.warns(UserWarning, match=r"r\(w\|x\) was given for training, but the loss .* does not use it"):
        Model(-p.log_prob().expectation(q).mean(), distributions=[p, q, stray])
    with pytest.warns(UserWarning, match=r"Linear was given for training"):
        Model(-p.log_prob().expectation(q).mean(), distributions=[p, q, nn.Linear(3, 3)])


def test_the_ready_made_models_use_every_distribution_they_are_given():
    from .test_model_classes import make as make_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in ("VAE", "VI", "ML", "GAN"):
            make_model(kind)
        small_vae()
    assert VAE and VI and ML  # imported for the names in the docstring


@pytest.mark.parametrize("call", ["train", "test"])
def test_an_empty_batch_is_refused_and_takes_no_step(call):
    model, _ = small_vae()
    model.train({"x": binary()})
    before = snapshot(model)
    with pytest.raises(ShapeError, match=rf"Model.{call}\(\): variable 'x' is an empty batch \(shape \(0, 6\)\)"):
        getattr(model, call)({"x": torch.zeros(0, 6)})
    assert_unchanged(model, before)


def test_fit_refuses_an_empty_batch():
    model, _ = small_vae()
    before = snapshot(model)
    with pytest.raises(ShapeError, match="empty batch"):
        model.fit([{"x": torch.zeros(0, 6)}], 1, progress=False)
    assert_unchanged(model, before)


@pytest.mark.parametrize("name, value", [
    ("max_steps", -1), ("max_steps", 0), ("max_steps", 1.5), ("max_steps", True),
    ("epochs", -1), ("accumulate", 0), ("checkpoint_every", 0),
])
def test_fit_refuses_counts_that_mean_nothing(name, value):
    model, _ = small_vae()
    loader = DataLoader(TensorDataset(binary()), batch_size=4)
    with pytest.raises(OptionError, match=rf"Model.fit\(\): {name} must be a (positive|non-negative) integer"):
        model.fit(loader, **{"epochs": 1, name: value}, keys=("x",), progress=False)


# ---------------------------------------------------------------------- options reach loss.eval
def spy_on_eval(loss):
    calls = []
    real = loss.eval

    def eval_(x_dict=None, **kwargs):
        calls.append(kwargs)
        return real(x_dict, **kwargs)

    loss.eval = eval_
    return calls


def test_batch_n_sets_the_number_of_samples_of_a_model_without_inputs():
    """VI with a global posterior (no inputs): ``batch_n`` is the only way to set the number of draws.

    q = N(1, I), p = N(0, I) in 2 dimensions: the loss -ELBO = KL(q||p) = 1, estimated from batch_n draws
    of log q(z) - log p(z) = sum_i (z_i - 1/2), whose variance is 2.
    """
    p = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p")
    q = Normal(loc=1., scale=1., var=["z"], features_shape=[2], name="q")
    q.loc = nn.Parameter(q.loc.clone())
    model = VI(p, q, optimizer_params={"lr": 1e-9})
    calls = spy_on_eval(model.loss_cls)
    torch.manual_seed(0)
    many = model.train({}, batch_n=20000)
    assert calls[-1]["batch_n"] == 20000
    assert abs(many.item() - 1.0) < 5 * math.sqrt(2 / 20000)
    assert abs(model.test({}, batch_n=20000).item() - 1.0) < 5 * math.sqrt(2 / 20000)
    assert calls[-1]["batch_n"] == 20000
    # Without batch_n, one draw: the estimates scatter with variance 2 around 1.
    one = torch.tensor([model.test({}).item() for _ in range(400)])
    assert 1.4 < one.var().item() < 2.8


def test_the_losses_own_options_pass_through_train_and_test():
    model, (p, q, prior) = small_vae()
    calls = spy_on_eval(model.loss_cls)
    x = binary()
    a = model.test({"x": x}, sample_mean=True)
    b = model.test({"x": x}, sample_mean=True)
    assert calls[-1] == {"return_terms": False, "sample_mean": True}
    assert torch.equal(a, b)  # means, not draws: the same value twice
    model.train({"x": x}, test_mode=True)
    assert calls[-1] == {"return_terms": False, "test_mode": True}


@pytest.mark.parametrize("call", ["train", "test"])
def test_options_pixyz_ignored_are_never_ignored(call):
    """Pixyz ignored ``batch_size`` (``model.train(x, batch_size=128)`` trained on one sample): here it
    is refused where the formula has no ``batch_n``, and never silently dropped where it has."""
    p = Normal(loc=torch.zeros(6), scale=1.0, var=["x"], name="p")
    p.loc = nn.Parameter(p.loc.clone())
    no_batch_n = Model(-p.log_prob().mean(), distributions=[p])
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['batch_size'\]; valid options: .*return_terms"):
        getattr(no_batch_n, call)({"x": binary()}, batch_size=128)
    model, _ = small_vae()
    with pytest.raises((TypeError, ShapeError), match="batch_size|batch_n=128 contradicts the batch size 16"):
        getattr(model, call)({"x": binary()}, batch_size=128)
    with pytest.raises(TypeError, match="return_dict"):
        getattr(model, call)({"x": binary()}, return_dict=True)


def test_valid_options_are_found_once_not_at_every_step(monkeypatch):
    calls = []
    real = model_module._loss_options
    monkeypatch.setattr(model_module, "_loss_options", lambda loss: (calls.append(loss), real(loss))[1])
    model, _ = small_vae()
    assert len(calls) == 2  # the training and the test loss, at construction
    for _ in range(3):
        model.train({"x": binary()}, sample_mean=False)
        model.test({"x": binary()}, sample_mean=False)
    assert len(calls) == 2
