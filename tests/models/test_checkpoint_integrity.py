"""Reading checkpoints never lets a damaged file through (issue 9, cause 6).

* fuzz: truncations and bit flips of ``Model.save`` and ``fit`` files, and malformed entries (missing
  keys, wrong types) written with a valid digest: every case either loads exactly the saved state or
  raises ``CheckpointError`` naming the file, and a refused file leaves the model as it was;
* killed writers: their temporary files are removed by the next successful save (not while they live);
* the folder is fsynced after the rename.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import stat
import subprocess
import sys
import zipfile

import pytest
import torch

from pixyz_like.errors import CheckpointError, PixyzLikeError
from pixyz_like.models import _checkpoint as ckpt
from pixyz_like.models import resume

from .fit_helpers import ROOT, make_vae, resume_fit, vae_data

HELPER = str(ROOT / "tests" / "models" / "fit_helpers.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def full_state(model):
    """Everything a load restores, copied: parameters, buffers and the optimizer's state."""
    return copy.deepcopy({"distributions": model.distributions.state_dict(), "optimizer": model.optimizer.state_dict()})


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return a == b


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained small VAE, its ``Model.save`` file and its ``fit`` checkpoint."""
    folder = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    model = make_vae(lr=1e-2, beta=True)
    resume_fit(model, max_steps=3, checkpoint=str(folder / "fit.pt"))
    model.save(folder / "model.pt")
    return model, folder / "model.pt", folder / "fit.pt"


def load_or_refuse(path, reader) -> str:
    """Load ``path`` into a fresh model with ``reader``; check the outcome; return which it was."""
    torch.manual_seed(1)
    fresh = make_vae(lr=1e-2, beta=True)
    before = full_state(fresh)
    try:
        reader(fresh, path)
    except CheckpointError as e:
        assert str(path) in str(e), e  # the message names the file
        assert same(full_state(fresh), before), "a refused file changed the model"
        return "refused"
    return "loaded", full_state(fresh)


def model_load(model, path):
    model.load(path)


def fit_resume(model, path):
    resume.read_fit_checkpoint(path, model)


def record_spans(path) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The byte spans of the checkpoint's zip archive: each record (header, padding and data, and the
    central directory after the last), and the data of each tensor record."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        infos = sorted(z.infolist(), key=lambda i: i.header_offset)
    ends = [i.header_offset for i in infos[1:]] + [len(data)]
    records = [(i.header_offset, end) for i, end in zip(infos, ends, strict=True)]
    tensors = []
    for info in infos:
        if "/data/" in info.filename:
            o = info.header_offset
            name_len = int.from_bytes(data[o + 26:o + 28], "little")
            extra_len = int.from_bytes(data[o + 28:o + 30], "little")
            start = o + 30 + name_len + extra_len
            tensors.append((start, start + info.compress_size))
    return records, tensors


@pytest.mark.parametrize("which, reader, flips", [("model", model_load, 240), ("fit", fit_resume, 120)])
def test_bit_flips_either_load_the_saved_state_or_are_refused(saved, tmp_path, which, reader, flips):
    model, model_file, fit_file = saved
    source = model_file if which == "model" else fit_file
    data = source.read_bytes()
    torch.manual_seed(1)
    reference = make_vae(lr=1e-2, beta=True)
    reader(reference, source)
    expected = full_state(reference)
    assert same(expected, full_state(model))
    rng = random.Random(0)
    # Half the flips anywhere in a record (the pickle, byte order, version, padding, headers...),
    # half in the bytes of a tensor (where a flip always changes a value).
    records, tensors = record_spans(source)
    outcomes = {"refused": 0, "loaded": 0, "tensor flips refused": 0}
    for i in range(flips):
        in_tensor = i % 2 == 1
        lo, hi = (tensors if in_tensor else records)[(i // 2) % len(tensors if in_tensor else records)]
        pos = rng.randrange(lo, hi)
        damaged = bytearray(data)
        damaged[pos] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.pt"
        path.write_bytes(bytes(damaged))
        result = load_or_refuse(path, reader)
        if result == "refused":
            outcomes["refused"] += 1
            outcomes["tensor flips refused"] += in_tensor
        else:
            assert same(result[1], expected), f"byte {pos} flipped: loaded other weights"
            assert not in_tensor, f"byte {pos} of a tensor flipped and the file loaded"
            outcomes["loaded"] += 1
        path.unlink()
    assert outcomes["tensor flips refused"] == flips // 2, outcomes


@pytest.mark.parametrize("which, reader", [("model", model_load), ("fit", fit_resume)])
def test_truncations_are_refused(saved, tmp_path, which, reader):
    _, model_file, fit_file = saved
    data = (model_file if which == "model" else fit_file).read_bytes()
    rng = random.Random(1)
    lengths = sorted({0, 1, 2, 21, 22, 100, len(data) // 2, len(data) - 22, len(data) - 1}
                     | {rng.randrange(len(data)) for _ in range(40)})
    for n in lengths:
        path = tmp_path / f"cut{n}.pt"
        path.write_bytes(data[:n])
        assert load_or_refuse(path, reader) == "refused", n
        path.unlink()


# ---------------------------------------------------------------------- malformed entries, valid digest
def _del(*keys):
    def f(s):
        d = s
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return f


def _set(value, *keys):
    def f(s):
        d = s
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return f


def _first(s, *keys):
    d = s
    for k in keys:
        d = d[k]
    return next(iter(d))


MODEL_MUTATIONS = {
    **{f"no {k}": _del(k) for k in ("distributions", "optimizer", "optimizers", "modules")},
    **{f"{k} is {v!r}": _set(v, k) for k in ("distributions", "optimizer", "optimizers", "modules")
       for v in (3, "x", None, [], torch.zeros(1))},
    "a parameter is a list": lambda s: s["distributions"].__setitem__(_first(s, "distributions"), [0.0]),
    "a parameter is missing": lambda s: s["distributions"].pop(_first(s, "distributions")),
    "an extra parameter": _set(torch.zeros(1), "distributions", "extra.weight"),
    "a parameter's shape": lambda s: s["distributions"].__setitem__(_first(s, "distributions"), torch.zeros(7, 7)),
    "optimizer without state": _del("optimizer", "state"),
    "optimizer without param_groups": _del("optimizer", "param_groups"),
    "param_groups is a dict": _set({}, "optimizer", "param_groups"),
    "parameter ids are names": lambda s: s["optimizer"]["param_groups"][0].__setitem__(
        "params", [str(i) for i in s["optimizer"]["param_groups"][0]["params"]]),
    "one parameter id too few": lambda s: s["optimizer"]["param_groups"][0]["params"].pop(),
    "a repeated parameter id": lambda s: s["optimizer"]["param_groups"][0]["params"].__setitem__(0, 1),
    "exp_avg is a string": lambda s: s["optimizer"]["state"][0].__setitem__("exp_avg", "zeros"),
    "a parameter's state is a list": lambda s: s["optimizer"]["state"].__setitem__(0, []),
    "state of an unknown parameter": lambda s: s["optimizer"]["state"].__setitem__(999, {}),
    "an extra optimizer": _set({"state": {}, "param_groups": []}, "optimizers", "critic"),
    "an extra network": _set({"w": torch.zeros(1)}, "modules", "critic"),
    "format 3": _set("pixyz_like.Model/3", "format"),
    "no format": _del("format"),
}

FIT_MUTATIONS = {
    "no fit": _del("fit"),
    "fit is a list": _set([], "fit"),
    **{f"no {k}": _del("fit", k) for k in ("epoch", "step", "batch", "history", "sums", "count", "rng",
                                          "epoch_rng", "scaler", "world_size")},
    **{f"{k} is {v!r}": _set(v, "fit", k) for k in ("epoch", "step", "batch", "count", "world_size")
       for v in (-1, 1.5, "3", None, True)},
    "history is a dict": _set({}, "fit", "history"),
    "history holds a string": _set(["x"], "fit", "history"),
    "a sum is a string": lambda s: s["fit"]["sums"].__setitem__("loss", "1.0"),
    "rng is a dict": _set({}, "fit", "rng"),
    "rng holds a number": _set([3], "fit", "rng"),
    "torch state too short": lambda s: s["fit"]["rng"][0].__setitem__("torch", torch.zeros(10, dtype=torch.uint8)),
    "torch state is float": lambda s: s["fit"]["rng"][0].__setitem__("torch", s["fit"]["rng"][0]["torch"].float()),
    "python state is a string": lambda s: s["fit"]["rng"][0].__setitem__("python", "state"),
    "numpy state without key": lambda s: s["fit"]["rng"][0]["numpy"].pop("key"),
    "no torch state": lambda s: s["fit"]["rng"][0].pop("torch"),
    "a sampler state is a string": lambda s: s["fit"]["rng"][0].__setitem__("samplers", ["state"]),
    "epoch_rng longer than rng": lambda s: s["fit"].__setitem__("epoch_rng", s["fit"]["rng"] * 2),
    "scaler is a list": _set([], "fit", "scaler"),
}


def test_fit_mutations_apply(saved):
    """The fit checkpoint is mid-epoch (step 3 of 7), so it has the epoch-start states the list mutates."""
    state = torch.load(saved[2], weights_only=True)
    assert state["fit"]["batch"] == 3 and state["fit"]["epoch_rng"] is not None and "numpy" in state["fit"]["rng"][0]


@pytest.mark.parametrize("name", list(MODEL_MUTATIONS) + [f"fit: {k}" for k in FIT_MUTATIONS])
def test_malformed_entries_are_refused_naming_the_file(saved, tmp_path, name):
    _, model_file, fit_file = saved
    is_fit = name.startswith("fit: ")
    state = torch.load(fit_file if is_fit else model_file, weights_only=True)
    (FIT_MUTATIONS[name[5:]] if is_fit else MODEL_MUTATIONS[name])(state)
    path = tmp_path / "bad.pt"
    ckpt.write_checkpoint(state, path)  # a valid digest: only the checks of each entry can refuse it
    assert load_or_refuse(path, fit_resume if is_fit else model_load) == "refused"


def test_missing_optimizer_or_step_names_the_entry(saved, tmp_path):
    _, model_file, fit_file = saved
    state = torch.load(model_file, weights_only=True)
    del state["optimizer"]
    ckpt.write_checkpoint(state, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"Model.load\(\): .*a.pt has no 'optimizer' entry"):
        make_vae().load(tmp_path / "a.pt")
    state = torch.load(fit_file, weights_only=True)
    del state["fit"]["step"]
    ckpt.write_checkpoint(state, tmp_path / "b.pt")
    pattern = r"resume=\.\.\.\): .*b.pt: its training state lacks the entries \['step'\]"
    with pytest.raises(CheckpointError, match=pattern):
        make_vae().fit([{"x": vae_data(8)}], 2, resume=str(tmp_path / "b.pt"), progress=False)


def test_edited_file_fails_its_digest(saved, tmp_path):
    _, model_file, _ = saved
    state = torch.load(model_file, weights_only=True)
    name = _first(state, "distributions")
    state["distributions"][name] = state["distributions"][name] + 1e-6  # one tiny change, digest kept
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt is corrupted: its contents do not match their sha256"):
        make_vae().load(tmp_path / "edited.pt")


def test_a_state_dict_saved_with_torch_save_loads_through_load_state_dict(tmp_path):
    torch.manual_seed(0)
    model = make_vae()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    other = make_vae()
    with pytest.raises(CheckpointError, match="no integrity digest"):
        other.load(tmp_path / "plain.pt")
    other.load_state_dict(torch.load(tmp_path / "plain.pt", weights_only=True))
    assert same(full_state(other)["distributions"], full_state(model)["distributions"])


def test_files_of_the_earlier_format_still_load(tmp_path):
    torch.manual_seed(0)
    model = make_vae()
    model.train({"x": vae_data(16)})
    state = model.state_dict()
    state["format"] = "pixyz_like.Model/1"  # as written before checkpoints carried a digest
    torch.save(state, tmp_path / "v1.pt")
    other = make_vae()
    other.load(tmp_path / "v1.pt")
    assert same(full_state(other), full_state(model))


def test_not_a_checkpoint_and_missing_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02junk")
    with pytest.raises(CheckpointError, match=r"junk.pt is not a readable checkpoint"):
        make_vae().load(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list.pt holds a list, not a Model checkpoint"):
        make_vae().load(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError):
        make_vae().load(tmp_path / "absent.pt")
    assert issubclass(CheckpointError, PixyzLikeError) and issubclass(CheckpointError, ValueError)


# ---------------------------------------------------------------------- writes
def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_killed_writers_leave_no_temporary_files_after_the_next_save(tmp_path):
    target = tmp_path / "c.pt"
    writers = [subprocess.Popen([sys.executable, HELPER, "save_forever", str(target), "200000"],
                                stdout=subprocess.PIPE, env=ENV) for _ in range(3)]
    try:
        for w in writers:
            assert w.stdout.readline().strip() == b"ready"
            assert w.stdout.readline().strip() == b"mid-write"
        assert len(_temporaries(tmp_path)) == 3  # one half-written file per writer
        ckpt.atomic_save({"w": torch.ones(3)}, target)
        assert len(_temporaries(tmp_path)) == 3, "a live writer's temporary file must be left alone"
        for w in writers[:2]:
            w.send_signal(signal.SIGKILL)
            w.wait(timeout=10)
        ckpt.atomic_save({"w": torch.ones(3)}, target)
        left = _temporaries(tmp_path)
        assert len(left) == 1 and f".{writers[2].pid}." in left[0]  # only the live writer's
        writers[2].send_signal(signal.SIGKILL)
        writers[2].wait(timeout=10)
        for _ in range(3):  # and they do not come back or pile up
            ckpt.atomic_save({"w": torch.ones(3)}, target)
        assert _temporaries(tmp_path) == []
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    torch.manual_seed(0)
    make_vae().save(tmp_path / "m.pt")
    assert events == [("fsync", "file"), ("replace", "m.pt"), ("fsync", "folder")]
