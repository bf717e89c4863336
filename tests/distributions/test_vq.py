"""VectorQuantizer and the VQ-VAE loss terms.

Expected values: hand-computed squared distances, the straight-through identity (the encoder's
gradient is the decoder's gradient at z_q), and a hand-written Lloyd's k-means for the EMA codebook.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Deterministic, Normal, VectorQuantizer
from pixyz_like.errors import NotDefinedError, ParameterError, ShapeError
from pixyz_like.losses import CodebookLoss, CommitmentLoss, LogProb
from pixyz_like.losses import Expectation as E
from pixyz_like.models import Model


class Encoder(Deterministic):
    def __init__(self, d_in=4, d=2):
        super().__init__(var=["z_e"], cond_var=["x"], name="q")
        self.net = nn.Linear(d_in, d)

    def forward(self, x):
        return {"z_e": self.net(x)}


class Decoder(Normal):
    def __init__(self, d=2, d_out=4):
        super().__init__(var=["x"], cond_var=["z_q"], name="p")
        self.net = nn.Linear(d, d_out)

    def forward(self, z_q):
        return {"loc": self.net(z_q), "scale": torch.ones(z_q.shape[0], self.net.out_features)}


def test_straight_through_gradient_reaches_the_encoder():
    vq = VectorQuantizer(6, 2)
    z_e = torch.randn(5, 2, requires_grad=True)
    z_q = vq.sample({"z_e": z_e})["z_q"]
    e, _ = vq.quantize(z_e)
    assert torch.equal(z_q, e.detach())
    w = torch.randn(5, 2)
    (z_q * w).sum().backward()
    torch.testing.assert_close(z_e.grad, w)  # d/dz_e = d/dz_q: as if there were no quantisation
    assert vq.codebook.grad is None  # the straight-through path does not train the codebook


def test_vq_vae_trains_the_encoder_decoder_and_codebook():
    enc, vq, dec = Encoder(), VectorQuantizer(8, 2), Decoder()
    q = vq * enc
    loss = E(q, -LogProb(dec) + CodebookLoss(vq) + CommitmentLoss(vq, beta=0.25)).mean()
    x = torch.randn(16, 4)
    loss.eval({"x": x}).backward()
    for name, param in (("encoder", enc.net.weight), ("decoder", dec.net.weight), ("codebook", vq.codebook)):
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # the codebook's gradient is the codebook loss's alone
    vq.codebook.grad = None
    E(q, -LogProb(dec) + CommitmentLoss(vq)).mean().eval({"x": x}).backward()
    assert vq.codebook.grad is None


def test_loss_terms_print_and_evaluate_per_data_point():
    vq = VectorQuantizer(2, 2)
    vq.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.1, -0.2], [0.9, 1.5], [2.0, 2.0]])
    nearest = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    expected = ((z - nearest) ** 2).sum(1)
    book, commit = CodebookLoss(vq), CommitmentLoss(vq, beta=0.25)
    assert str(book) == r"\| sg[z_{e}] - e \|^2"
    assert str(commit) == r"0.25 \| z_{e} - sg[e] \|^2"
    assert str(CommitmentLoss(vq, beta="beta")) == r"\beta \| z_{e} - sg[e] \|^2"
    torch.testing.assert_close(book.eval({"z_e": z}), expected)
    torch.testing.assert_close(commit.eval({"z_e": z}), 0.25 * expected)
    # the commitment gradient reaches z_e only; the codebook gradient the codebook only
    zg = z.clone().requires_grad_()
    commit.eval({"z_e": zg}).sum().backward()
    torch.testing.assert_close(zg.grad, 0.5 * (z - nearest))
    assert vq.codebook.grad is None
    zg.grad = None
    book.eval({"z_e": zg}).sum().backward()
    assert zg.grad is None
    torch.testing.assert_close(vq.codebook.grad, torch.tensor([[-0.2, 0.4], [-1.8, -3.0]]))  # -2 sum(z - e_k)


def _lloyd(x, centres, iters=100):
    for _ in range(iters):
        k = torch.cdist(x, centres).argmin(1)
        centres = torch.stack([x[k == j].mean(0) for j in range(len(centres))])
    return centres


def _mixture(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])
    labels = torch.arange(n) % 4
    return means[labels] + 0.7 * torch.randn(n, 2, generator=g), labels


@pytest.mark.parametrize("debias", [True, False])
def test_ema_codebook_converges_to_the_k_means_centres(debias):
    x, labels = _mixture()
    init = x[[labels.tolist().index(j) for j in range(4)]]  # one point of each cluster
    expected = _lloyd(x, init.clone())
    vq = VectorQuantizer(4, 2, var=["c"], cond_var=["x"], ema=True, decay=0.9, debias=debias)
    vq.codebook.copy_(init)
    assert not list(vq.parameters())  # an EMA codebook is not trained by the optimizer
    for _ in range(300):  # full batch: the fixed point is Lloyd's
        vq.sample({"x": x})
    torch.testing.assert_close(vq.codebook, expected, atol=1e-3, rtol=0)
    # online, on minibatches: close to the same centres
    vq.codebook.copy_(init)
    vq.ema_count.zero_(), vq.ema_sum.zero_(), vq.steps.zero_()
    g = torch.Generator().manual_seed(1)
    for _ in range(600):
        vq.sample({"x": x[torch.randint(len(x), (32,), generator=g)]})
    torch.testing.assert_close(vq.codebook, expected, atol=0.15, rtol=0)


def test_debiasing_removes_the_pull_toward_zero():
    x = torch.full((8, 1), 10.0)
    biased = VectorQuantizer(1, 1, cond_var=["x"], ema=True, decay=0.99, epsilon=1.0, debias=False)
    fair = VectorQuantizer(1, 1, cond_var=["x"], ema=True, decay=0.99, epsilon=1.0, debias=True)
    for vq in (biased, fair):
        vq.sample({"x": x})
    # one step: count 0.01 * 8, sum 0.01 * 80; de-biased: 8 and 80
    torch.testing.assert_close(biased.codebook, torch.tensor([[0.8 / (0.08 + 1.0)]]))
    torch.testing.assert_close(fair.codebook, torch.tensor([[80.0 / (8.0 + 1.0)]]))


def test_state_moves_only_in_training_evaluations():
    vq = VectorQuantizer(3, 2, ema=True)
    z = torch.randn(10, 2)
    before = vq.codebook.clone()
    with torch.no_grad():
        vq.sample({"z_e": z})
    vq.eval()
    vq.sample({"z_e": z})
    assert torch.equal(vq.codebook, before) and int(vq.steps) == 0
    vq.train()
    vq.sample({"z_e": z})
    assert int(vq.steps) == 1 and not torch.equal(vq.codebook, before)
    with pytest.raises(NotDefinedError, match="moving averages"):
        CodebookLoss(vq)


def test_model_test_leaves_the_codebook_and_save_load_carries_it(tmp_path):
    enc, vq, dec = Encoder(), VectorQuantizer(4, 2, ema=True), Decoder()
    loss = E(vq * enc, -LogProb(dec) + CommitmentLoss(vq)).mean()
    model = Model(loss, distributions=[enc, vq, dec])
    x = torch.randn(16, 4)
    model.train({"x": x})
    book, usage = vq.codebook.clone(), vq.usage.clone()
    model.test({"x": x})
    assert torch.equal(vq.codebook, book) and torch.equal(vq.usage, usage)
    model.save(tmp_path / "m.pt")
    enc2, vq2, dec2 = Encoder(), VectorQuantizer(4, 2, ema=True), Decoder()
    model2 = Model(E(vq2 * enc2, -LogProb(dec2) + CommitmentLoss(vq2)).mean(), distributions=[enc2, vq2, dec2])
    model2.load(tmp_path / "m.pt")
    for name in ("codebook", "ema_count", "ema_sum", "usage", "steps"):
        assert torch.equal(getattr(vq2, name), getattr(vq, name)), name


def test_channel_first_layout():
    vq = VectorQuantizer(5, 3, channel_dim=1)
    z = torch.randn(2, 3, 4, 4)
    e, k = vq.quantize(z)
    assert e.shape == z.shape and k.shape == (2, 4, 4)
    last = VectorQuantizer(5, 3)
    last.codebook.data = vq.codebook.data
    e_last, k_last = last.quantize(z.permute(0, 2, 3, 1))
    assert torch.equal(k, k_last) and torch.equal(e, e_last.permute(0, 3, 1, 2))
    assert torch.equal(vq.decode(k), e) and torch.equal(vq.encode(z), k)
    assert CodebookLoss(vq).eval({"z_e": z}).shape == (2,)


def test_perplexity_and_usage():
    vq = VectorQuantizer(4, 1)
    vq.codebook.data = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    assert float(vq.perplexity(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))) == pytest.approx(4.0)
    assert float(vq.perplexity(torch.zeros(6, 1))) == pytest.approx(1.0)
    two = torch.tensor([[0.0], [0.0], [3.0], [3.0]])
    assert float(vq.perplexity(two)) == pytest.approx(2.0)
    assert torch.equal(vq.code_usage(), torch.zeros(4))  # no training call yet
    for _ in range(3):
        vq.sample({"z_e": two})
    torch.testing.assert_close(vq.code_usage(), torch.tensor([0.5, 0.0, 0.0, 0.5]))  # de-biased average
    assert float(vq.perplexity()) == pytest.approx(2.0)


def test_named_errors():
    vq = VectorQuantizer(4, 3)
    with pytest.raises(ShapeError, match="embedding_dim=3"):
        vq.sample({"z_e": torch.zeros(2, 5)})
    with pytest.raises(ParameterError, match=r"\[0, 4\)"):
        vq.decode(torch.tensor([0, 4]))
    with pytest.raises(ParameterError, match="channel_dim"):
        VectorQuantizer(4, 3, channel_dim=2)
    with pytest.raises(ParameterError, match="num_embeddings"):
        VectorQuantizer(0, 3)
    with pytest.raises(TypeError, match="VectorQuantizer"):
        CommitmentLoss(Encoder())


def test_codebook_usage_is_logged_by_fit():
    from pixyz_like.models.codebook import CodebookUsage
    from pixyz_like.models.training import Callback

    class Seen(Callback):
        def __init__(self):
            self.values = []

        def on_step_end(self, model, state, logs):
            self.values.append(logs["vq/perplexity"])

    enc, vq, dec = Encoder(), VectorQuantizer(4, 2), Decoder()
    model = Model(E(vq * enc, -LogProb(dec) + CodebookLoss(vq) + CommitmentLoss(vq)).mean(),
                  distributions=[enc, vq, dec])
    usage, seen = CodebookUsage(vq), Seen()
    batches = [{"x": torch.randn(16, 4)} for _ in range(3)]
    history = model.fit(batches, epochs=2, callbacks=[usage, seen], progress=False)
    assert len(seen.values) == 6 and all(1.0 <= v <= 4.0 for v in seen.values)
    assert history[-1]["train/vq/perplexity"] == pytest.approx(float(vq.perplexity()))
    assert history[-1]["train/vq/usage"] == pytest.approx(float(vq.perplexity()) / 4)
    assert [s for s, _ in usage.history] == list(range(1, 7))
