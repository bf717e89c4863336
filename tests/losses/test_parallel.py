"""DataParalleledLoss: on this CPU-only machine it must behave exactly as the loss it wraps."""

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Deterministic, EmpiricalDistribution, Normal
from pixyz_like.losses import AdversarialJensenShannon, DataParalleledLoss, KullbackLeibler
from pixyz_like.models import Model


class Encoder(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Linear(3, 4)

    def forward(self, x):
        h = self.net(x)
        return {"loc": h[:, :2], "scale": nn.functional.softplus(h[:, 2:]) + 1e-3}


def vae_terms():
    q = Encoder()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    return q, KullbackLeibler(q, prior)


def test_same_value_text_and_gradient_as_the_wrapped_loss():
    q, kl = vae_terms()
    wrapped = DataParalleledLoss(kl)
    x = torch.randn(6, 3)
    torch.testing.assert_close(wrapped.eval({"x": x}), kl.eval({"x": x}))
    assert str(wrapped) == str(kl) and str(wrapped.mean()) == str(kl.mean())
    assert wrapped.input_var == kl.input_var
    wrapped.mean().eval({"x": x}).backward()
    assert q.net.weight.grad.abs().sum() > 0


def test_samples_come_back_and_options_pass_through():
    d = Deterministic(var=["t"], cond_var=["x"], name="d")
    d.net = nn.Linear(3, 1)
    d.forward = lambda x: {"t": torch.sigmoid(d.net(x))}
    adv = AdversarialJensenShannon(EmpiricalDistribution(["x"]), Normal(loc=0.0, scale=1.0, var=["x"],
                                                                         features_shape=[3]), d)
    wrapped = DataParalleledLoss(adv)
    x = {"x": torch.randn(5, 3)}
    torch.manual_seed(0)
    a = wrapped.eval(x, discriminator=True)
    torch.manual_seed(0)
    b = adv.eval(x, discriminator=True)
    torch.testing.assert_close(a, b)
    # Attributes of the wrapped loss are reachable through the wrapper (Pixyz did the same).
    assert wrapped.d is d and callable(wrapped.loss_train)
    with pytest.raises(TypeError, match="unknown option"):
        wrapped.eval(x, discrimnator=True)


def test_trains_inside_a_model():
    q, kl = vae_terms()
    model = Model(DataParalleledLoss(kl).mean(), distributions=[q], optimizer_params={"lr": 0.05})
    x = torch.randn(32, 3)
    first = model.test({"x": x}).item()
    for _ in range(30):
        model.train({"x": x})
    assert model.test({"x": x}).item() < 0.5 * first


def test_refuses_a_non_loss():
    with pytest.raises(TypeError, match="wraps a Loss"):
        DataParalleledLoss(nn.Linear(2, 2))
