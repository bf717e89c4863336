"""VAE, VI, ML and GAN: each trains a small model on data made here, and takes Model's options."""

import pytest
import torch
from torch import nn, optim

from pixyz_like.distributions import Categorical, Deterministic, Normal
from pixyz_like.losses import KullbackLeibler, Parameter
from pixyz_like.models import GAN, ML, VAE, VI

X_DIM, Z_DIM, H = 6, 2, 16


class Encoder(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Sequential(nn.Linear(X_DIM, H), nn.Tanh(), nn.Linear(H, 2 * Z_DIM))

    def forward(self, x):
        h = self.net(x)
        return {"loc": h[:, :Z_DIM], "scale": nn.functional.softplus(h[:, Z_DIM:]) + 1e-3}


class Decoder(Normal):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Sequential(nn.Linear(Z_DIM, H), nn.Tanh(), nn.Linear(H, X_DIM))

    def forward(self, z):
        return {"loc": self.net(z), "scale": torch.full((1, X_DIM), 0.3)}


class Classifier(Categorical):
    def __init__(self):
        super().__init__(var=["y"], cond_var=["x"], name="p")
        self.net = nn.Linear(X_DIM, 2)

    def forward(self, x):
        return {"probs": torch.softmax(self.net(x), dim=-1)}


class Generator(Deterministic):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Linear(1, 1)

    def forward(self, z):
        return {"x": self.net(z)}


class Critic(Deterministic):
    def __init__(self):
        super().__init__(var=["t"], cond_var=["x"], name="d")
        self.net = nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return {"t": torch.sigmoid(self.net(x))}


def manifold_data(n):
    """Points near a 2-D curved manifold in 6-D."""
    g = torch.Generator().manual_seed(7)
    mix = torch.randn(Z_DIM, X_DIM, generator=g)
    z = torch.randn(n, Z_DIM)
    return {"x": torch.tanh(z @ mix) + 0.05 * torch.randn(n, X_DIM)}


def blobs(n):
    y = torch.randint(0, 2, (n,))
    x = torch.randn(n, X_DIM) + (2.0 * y - 1).unsqueeze(1)
    return {"x": x, "y": nn.functional.one_hot(y, 2).float()}


def prior():
    return Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")


def gan_prior():
    return Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[1], name="p_{prior}")


def make(kind, **options):
    if kind == "VAE":
        q = Encoder()
        return VAE(q, Decoder(), regularizer=KullbackLeibler(q, prior()), **options), manifold_data
    if kind == "VI":
        return VI(Decoder() * prior(), Encoder(), **options), manifold_data
    if kind == "ML":
        return ML(Classifier(), **options), blobs
    generator = (Generator() * gan_prior()).marginalize_var("z")
    return GAN(generator, Critic(), **options), lambda n: {"x": 3.0 + 0.5 * torch.randn(n, 1)}


KINDS = ["VAE", "VI", "ML", "GAN"]


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("kind", ["VAE", "VI", "ML"])
def test_loss_falls(kind):
    model, data = make(kind, optimizer_params={"lr": 1e-2})
    held_out = data(512)
    before = model.test(held_out).item()
    for _ in range(150):
        model.train(data(64))
    after = model.test(held_out).item()
    assert after < before - 0.2 * abs(before)
    if kind == "ML":
        with torch.no_grad():
            probs = model.p.forward(held_out["x"])["probs"]
        accuracy = (probs.argmax(-1) == held_out["y"].argmax(-1)).float().mean()
        assert accuracy > 0.9  # the Bayes rate for these blobs is Phi(sqrt(6)) = 0.993


def test_gan_learns_the_data_distribution_and_returns_both_losses():
    model, data = make("GAN", optimizer_params={"lr": 0.02, "betas": (0.5, 0.999)},
                       d_optimizer_params={"lr": 0.02, "betas": (0.5, 0.999)})
    gen = model.p
    with torch.no_grad():
        start = gen.sample(batch_n=4000)["x"].mean().item()
    for _ in range(250):
        out = model.train(data(128))
        assert isinstance(out, tuple) and len(out) == 2
        assert all(v.ndim == 0 and not v.requires_grad for v in out)
    with torch.no_grad():
        samples = gen.sample(batch_n=4000)["x"]
    assert abs(start - 3.0) > 1.5
    assert abs(samples.mean().item() - 3.0) < 0.3
    loss, d_loss = model.test(data(256))
    assert loss.ndim == 0 and d_loss.ndim == 0
    assert model.train(data(8), adversarial_loss=False).ndim == 0


@pytest.mark.parametrize("kind", KINDS)
def test_model_options_are_taken(kind):
    model, _ = make(kind, optimizer=optim.SGD, optimizer_params={"lr": 0.5, "momentum": 0.1},
                    clip_grad_norm=3.0, clip_grad_value=0.25, retain_graph=False, device="cpu")
    assert isinstance(model.optimizer, optim.SGD)
    assert model.optimizer.param_groups[0]["lr"] == 0.5
    assert model.clip_norm == 3.0 and model.clip_value == 0.25
    assert model.device == torch.device("cpu")


@pytest.mark.parametrize("kind", KINDS)
def test_clipping_bounds_each_step(kind):
    # SGD with lr 1: every parameter moves by its (clipped) gradient, at most clip_grad_value.
    model, data = make(kind, optimizer=optim.SGD, optimizer_params={"lr": 1.0}, clip_grad_value=1e-3)
    before = [w.detach().clone() for w in model.distributions.parameters()]
    model.train(data(16))
    moves = [(w.detach() - b).abs().max().item() for w, b in zip(model.distributions.parameters(), before)]
    assert max(moves) <= 1e-3 + 1e-7 and max(moves) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_options_are_refused(kind):
    model, data = make(kind)
    with pytest.raises(TypeError, match="unknown option"):
        model.train(data(4), batch_size=4)
    with pytest.raises(TypeError):
        make(kind, learning_rate=0.1)


def test_vae_formulas_and_weighted_regulariser():
    q, p = Encoder(), Decoder()
    plain = VAE(q, p)
    assert str(plain.loss_cls) == r"mean \left(- \mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] \right)"
    beta = Parameter("beta")
    model = VAE(q, p, regularizer=beta * KullbackLeibler(q, prior()))
    assert str(model.loss_cls) == (  # the regulariser first, as Pixyz prints it
        r"mean \left(\beta D_{KL} \left[q(z|x)||p_{prior}(z) \right] - "
        r"\mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] \right)")
    x = manifold_data(32)
    model.train({**x, "beta": 0.1})
    assert torch.isfinite(model.test({**x, "beta": 1.0}))
    with pytest.raises(TypeError, match="regularizer"):
        VAE(q, p, regularizer=0.5)


def test_vi_and_ml_formulas():
    vi, _ = make("VI")
    assert str(vi.loss_cls) == r"- mean \left(\mathbb{E}_{q(z|x)} \left[\log p(x,z) - \log q(z|x) \right] \right)"
    ml, _ = make("ML")
    assert str(ml.loss_cls) == r"mean \left(- \log p(y|x) \right)"


def test_gan_checkpoint_restores_the_critic(tmp_path):
    model, data = make("GAN")
    for _ in range(3):
        model.train(data(16))
    model.save(tmp_path / "gan.pt")
    fresh, _ = make("GAN")
    fresh.load(tmp_path / "gan.pt")
    for a, b in zip(model.discriminator.parameters(), fresh.discriminator.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="discriminator"):
        model.train(data(4), discriminator=True)


def test_gan_fit_logs_both_losses():
    model, data = make("GAN")
    history = model.fit([data(16) for _ in range(3)], 2, progress=False)
    assert {"train/loss", "train/d_loss"} <= set(history[-1])
