"""Model.fit: the loop, logged values, schedules, accumulation, compile/amp options, callbacks, bad input."""

import math
import struct

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like import set_validation
from pixyz_like.distributions import Normal
from pixyz_like.errors import MissingVariableError
from pixyz_like.losses import LogProb, Parameter
from pixyz_like.losses.schedules import constant, linear_warmup, sigmoid_warmup
from pixyz_like.models import Model
from pixyz_like.models.training import Callback, FitState, NonFiniteLossError, TensorBoardLogger

from .fit_helpers import make_regression, make_vae, params, regression_data, vae_data


class Record(Callback):
    def __init__(self):
        self.calls, self.steps = [], []

    def on_fit_start(self, model, state):
        self.calls.append("fit_start")

    def on_epoch_start(self, model, state):
        self.calls.append(f"epoch_start{state.epoch}")

    def on_step_end(self, model, state, logs):
        self.calls.append("step")
        self.steps.append((state.step, dict(logs)))

    def on_epoch_end(self, model, state, logs):
        self.calls.append(f"epoch_end{state.epoch}")

    def on_fit_end(self, model, state):
        self.calls.append("fit_end")


def reg_loader(batch_size=8, n=32, shuffle=False):
    x, y = regression_data(n)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


# ---------------------------------------------------------------------- schedules
@pytest.mark.parametrize("cls", [linear_warmup, sigmoid_warmup])
def test_warmups_hit_end_points_and_rise(cls):
    s = cls(0.2, 1.0, steps=50, delay=10)
    values = [s(t) for t in range(80)]
    assert values[:11] == [0.2] * 11 and values[60:] == [1.0] * 20
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert s(35) == pytest.approx(0.6)  # both are symmetric about the middle of the warm-up


def test_warmup_formulas():
    lin = linear_warmup(1.0, 3.0, steps=8)
    assert [lin(t) for t in (0, 2, 8)] == [1.0, 1.5, 3.0]
    sig = sigmoid_warmup(0.0, 1.0, steps=10, sharpness=4.0)

    def logistic(v):
        return 1 / (1 + math.exp(-v))

    expected = (logistic(4 * (0.3 - 0.5)) - logistic(-2)) / (logistic(2) - logistic(-2))
    assert sig(3) == pytest.approx(expected, rel=1e-12)
    assert constant(0.5)(123) == 0.5
    with pytest.raises(ValueError, match="steps"):
        linear_warmup(0, 1, steps=-1)
    with pytest.raises(ValueError, match="sharpness"):
        sigmoid_warmup(0, 1, steps=5, sharpness=0)


def test_schedule_value_enters_the_loss_each_step():
    """loss = beta * mean(-log N(x; 0, 1)); with lr=0 the base is fixed, so loss_t = beta(t) * base."""
    p = Normal(loc=torch.zeros(2), scale=1.0, var=["x"], name="p")
    p.loc = torch.nn.Parameter(p.loc.clone())
    model = Model(Parameter("beta") * (-LogProb(p)).mean(), distributions=[p], optimizer=torch.optim.SGD,
                  optimizer_params={"lr": 0.0})
    x = torch.randn(12, 2)
    nll = (0.5 * x.pow(2) + 0.5 * math.log(2 * math.pi)).sum(1)
    base = [nll[i:i + 4].mean().item() for i in (0, 4, 8)]  # per batch of 4, not shuffled
    rec = Record()
    schedule = linear_warmup(0.0, 1.0, steps=4)
    model.fit(DataLoader(TensorDataset(x), batch_size=4), epochs=2, keys=("x",), schedules={"beta": schedule},
              callbacks=[rec], progress=False)
    assert len(rec.steps) == 6
    for step, logs in rec.steps:
        beta = schedule(step - 1)  # step k (counted from 1) is taken with the schedule at k - 1
        assert logs["schedule/beta"] == beta
        assert logs["loss"] == pytest.approx(beta * base[(step - 1) % 3], rel=1e-5, abs=1e-6)
    assert [logs["schedule/beta"] for _, logs in rec.steps] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_schedule_errors():
    model = make_vae(beta=True)
    loader = DataLoader(TensorDataset(vae_data(8)), batch_size=4)
    with pytest.raises(ValueError, match="'bta' names no variable"):
        model.fit(loader, 1, keys=("x",), schedules={"bta": constant(1.0)}, progress=False)
    with pytest.raises(MissingVariableError, match="beta"):
        model.fit(loader, 1, keys=("x",), progress=False)


# ---------------------------------------------------------------------- the loop and its logs
def test_vae_loss_falls_and_history_holds_terms():
    torch.manual_seed(0)
    model = make_vae(lr=1e-2)
    data = vae_data(64)
    train = DataLoader(TensorDataset(data), batch_size=16, shuffle=True)
    test = [{"x": data[:32]}, {"x": data[32:40]}]  # any iterable of dicts works as a loader
    history = model.fit(train, 8, test, keys=("x",), progress=False)
    assert len(history) == 8
    kl, rec = "train/KL[q(z|x)||p_prior(z)]", "train/E_q(z|x)[log p(x|z)]"
    assert {"train/loss", kl, rec, "test/loss", "epoch", "step"} <= set(history[0])
    assert history[-1]["train/loss"] < history[0]["train/loss"] - 0.5
    # the loss is KL - E[log p]: the epoch means of the terms add up to the loss's
    for h in history:
        assert h["train/loss"] == pytest.approx(h[kl] - h[rec], rel=1e-5)
    assert history[-1]["step"] == 8 * 4


def test_epoch_means_weight_batches_by_size():
    """Batches of 8, 8, 8, 6: the epoch mean is the per-data-point mean, as for the full data set."""
    model = make_regression(lr=0.0)
    x, y = regression_data(30)
    hist = model.fit(DataLoader(TensorDataset(x, y), batch_size=8), 1, DataLoader(TensorDataset(x, y), batch_size=7),
                     keys=("x", "y"), progress=False)
    full = model.test({"x": x, "y": y}).item()
    assert hist[0]["train/loss"] == pytest.approx(full, rel=1e-5)
    assert hist[0]["test/loss"] == pytest.approx(full, rel=1e-5)


def test_callback_order_and_stop():
    rec = Record()

    class StopAt3(Callback):
        def on_step_end(self, model, state, logs):
            state.stop = state.step == 3

    make_regression().fit(reg_loader(), 5, callbacks=[rec, StopAt3()], keys=("x", "y"), progress=False)
    assert [s for s, _ in rec.steps] == [1, 2, 3]
    assert rec.calls == ["fit_start", "epoch_start0", "step", "step", "step", "fit_end"]
    assert {"loss", "lr/optimizer"} <= set(rec.steps[0][1])
    assert FitState().stop is False


def test_accumulate_equals_one_large_batch():
    """accumulate=2 with batches of 8 takes the steps of batches of 16; a short last group of an
    epoch (here 1 batch) is averaged over its own size."""
    x, y = regression_data(40)
    torch.manual_seed(0)
    acc = make_regression()
    acc.fit(DataLoader(TensorDataset(x, y), batch_size=8), 1, keys=("x", "y"), accumulate=2, progress=False)
    torch.manual_seed(0)
    big = make_regression()
    for sl in (slice(0, 16), slice(16, 32), slice(32, 40)):
        big.train({"x": x[sl], "y": y[sl]})
    for k, v in params(big).items():
        torch.testing.assert_close(params(acc)[k], v, rtol=1e-5, atol=1e-6)


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler (simulated)")


def test_compile_matches_eager_and_falls_back(monkeypatch):
    x, y = regression_data(16)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    torch.manual_seed(0)
    eager = make_regression()
    eager.fit(loader, 2, keys=("x", "y"), progress=False)
    torch.manual_seed(0)
    compiled = make_regression()
    compiled.fit(loader, 2, keys=("x", "y"), progress=False, compile={"backend": "aot_eager"})
    for k, v in params(eager).items():
        torch.testing.assert_close(params(compiled)[k], v, rtol=1e-5, atol=1e-6)

    # The documented failures of torch.compile itself fall back to eager, with a warning naming them:
    # a backend that cannot compile (no C++ compiler...), and a platform TorchDynamo does not support.
    torch.manual_seed(0)
    failing = make_regression()
    with pytest.warns(RuntimeWarning, match="BackendCompilerFailed.*simulated"):
        failing.fit(loader, 2, keys=("x", "y"), progress=False, compile={"backend": _failing_backend})
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    torch.manual_seed(0)
    fallback = make_regression()
    with pytest.warns(RuntimeWarning, match="not supported on this platform"):
        fallback.fit(loader, 2, keys=("x", "y"), progress=False, compile=True)
    for k, v in params(eager).items():
        assert torch.equal(params(fallback)[k], v)
        assert torch.equal(params(failing)[k], v)


class Exploding(Normal):
    """p(x|y) whose network raises: a user's error (or an out-of-memory error) inside the compiled loss."""

    def __init__(self, error):
        super().__init__(var=["x"], cond_var=["y"], name="p")
        self.net, self.error = torch.nn.Linear(3, 2), error

    def forward(self, y):
        if y.shape[0] == 8:
            raise self.error
        return {"loc": self.net(y), "scale": torch.ones(y.shape[0], 2)}


@pytest.mark.parametrize("error", [ValueError("a bug in forward (simulated)"),
                                   torch.OutOfMemoryError("CUDA out of memory (simulated)")], ids=["user", "oom"])
def test_compile_lets_user_errors_and_out_of_memory_through(error):
    """Only a failure of torch.compile itself falls back: an error of the computation propagates as it
    is, without a warning and without quietly turning compilation off."""
    p = Exploding(error)
    model = Model(-p.log_prob().mean(), distributions=[p])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(type(error), match="simulated"):
            model.fit(reg_loader(), 1, keys=("x", "y"), progress=False, compile={"backend": "eager"})


def test_amp_on_cpu():
    loader = reg_loader()
    model = make_regression()
    with pytest.raises(ValueError, match="CUDA.*amp='bf16'"):
        model.fit(loader, 1, keys=("x", "y"), amp=True, progress=False)
    with pytest.raises(ValueError, match="amp must be"):
        model.fit(loader, 1, keys=("x", "y"), amp="fp8", progress=False)
    before = params(model)
    hist = model.fit(loader, 1, keys=("x", "y"), amp="bf16", progress=False)
    assert math.isfinite(hist[0]["train/loss"])
    assert any(not torch.equal(before[k], v) for k, v in params(model).items())


# ---------------------------------------------------------------------- loaders and bad input
def test_tuple_batches_need_keys_and_dicts_need_the_loss_variables():
    model = make_vae()
    images = TensorDataset(vae_data(8), torch.arange(8))  # torchvision style (image, label)
    loader = DataLoader(images, batch_size=4)
    model.fit(loader, 1, keys=("x", None), progress=False)  # the label is dropped
    with pytest.raises(TypeError, match="keys="):
        model.fit(loader, 1, progress=False)
    with pytest.raises(ValueError, match=r"names 1 element\(s\) but each batch has 2"):
        model.fit(loader, 1, keys=("x",), progress=False)
    with pytest.raises(MissingVariableError, match=r"\['x'\].*\['image', 'label'\]"):
        model.fit(loader, 1, keys=("image", "label"), progress=False)
    with pytest.raises(MissingVariableError, match=r"needs variable \['x'\].*\['pixels'\]"):
        model.fit([{"pixels": vae_data(4)}], 1, progress=False)


def test_nan_names_step_and_term():
    x, y = regression_data(24)
    y = y.clone()
    y[10, 0] = float("inf")  # second batch of 8
    p, q = Normal(var=["x"], loc=torch.zeros(2), scale=1.0, name="p"), make_regression().distributions[0]
    p.loc = torch.nn.Parameter(p.loc.clone())
    two_terms = Model((-LogProb(p) - LogProb(q)).mean(), distributions=[p, q])
    # Validation off: the inf reaches the loss (with it on, the distribution refuses it first).
    with set_validation(False), pytest.raises(NonFiniteLossError, match=r"step 2 \(epoch 1\).*\['log p\(x\|y\)'\]"):
        two_terms.fit(DataLoader(TensorDataset(x, y), batch_size=8), 1, keys=("x", "y"), progress=False)


def test_bad_arguments():
    model = make_regression()
    loader = reg_loader()
    with pytest.raises(ValueError, match="epochs"):
        model.fit(loader, -1, keys=("x", "y"))
    with pytest.raises(ValueError, match="accumulate"):
        model.fit(loader, 1, keys=("x", "y"), accumulate=0)
    with pytest.raises(TypeError, match="batch_size"):
        model.fit(loader, 1, keys=("x", "y"), options={"batch_size": 3})


class TwoLosses(Model):
    """A subclass with its own train step returning two losses, as a GAN does."""

    loss_names = ("loss", "d_loss")

    def train(self, train_x_dict=None, **options):
        loss = super().train(train_x_dict, **options)
        return loss, 2 * loss

    def test(self, test_x_dict=None, **options):
        loss = super().test(test_x_dict, **options)
        return loss, 2 * loss


def test_subclass_with_own_train_step():
    inner = make_regression()
    model = TwoLosses(inner.loss_cls, distributions=list(inner.distributions))
    rec = Record()
    hist = model.fit(reg_loader(), 2, reg_loader(), keys=("x", "y"), callbacks=[rec], progress=False)
    for _, logs in rec.steps:
        assert logs["d_loss"] == pytest.approx(2 * logs["loss"])
    assert hist[-1]["train/d_loss"] == pytest.approx(2 * hist[-1]["train/loss"])
    assert {"test/loss", "test/d_loss"} <= set(hist[-1])
    with pytest.raises(ValueError, match="own train"):
        model.fit(reg_loader(), 1, keys=("x", "y"), accumulate=2, progress=False)


def _read_events(folder):
    """Scalars and image tags from tensorboardX event files (TFRecord framing of Event protos)."""
    from tensorboardX.proto import event_pb2

    scalars, images = {}, set()
    for f in folder.iterdir():
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("image"):
                    images.add(v.tag)
                else:
                    scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars, images


def test_tensorboard_logs_terms_losses_lr_and_images(tmp_path):
    torch.manual_seed(0)
    model = make_vae(beta=True)
    data = vae_data(16)
    logger = TensorBoardLogger(str(tmp_path), image_shape=(1, 3, 4),
                               images=lambda m: {"samples": torch.rand(4, 12)})
    rec = Record()
    model.fit(DataLoader(TensorDataset(data), batch_size=8), 2, [{"x": data}], keys=("x",),
              schedules={"beta": linear_warmup(0, 1, 4)}, callbacks=[logger, rec], progress=False)
    scalars, images = _read_events(tmp_path)
    # Readable tags: the names of the logs as they are (issue 10), not mangled to TensorFlow op names.
    for tag in ("train/loss", "train/KL[q(z|x)||p_prior(z)]", "train/E_q(z|x)[log p(x|z)]", "lr/optimizer",
                "schedule/beta", "train_epoch/loss", "train_epoch/KL[q(z|x)||p_prior(z)]", "test/loss",
                "test/KL[q(z|x)||p_prior(z)]"):
        assert tag in scalars, tag
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    logged = [v for _, v in scalars["train/loss"]]
    assert logged == pytest.approx([logs["loss"] for _, logs in rec.steps], rel=1e-6)
    assert images == {"samples"}
