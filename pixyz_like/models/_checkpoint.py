"""Checkpoint files: the one place that writes and reads them.

A checkpoint is a plain ``torch.save`` of a dict of state dicts (so ``torch.load(path)["distributions"]``
works, as Pixyz's ``Model.load`` expects), with two additions:

* ``"format"``: ``"pixyz_like.Model/2"``;
* ``"sha256"``: a digest of everything else in the file — every tensor's dtype, shape and bytes and
  every key, number and string, walked in order — checked on load, so a file damaged on disk
  (a flipped bit, a truncation) is refused instead of loading other weights.

Reading accepts three layouts: ours with its digest, ours from before digests
(``"pixyz_like.Model/1"``) and Pixyz 0.3.3's (``{"distributions": state_dict}``). Files are read
with ``torch.load(weights_only=True)``: only tensors and plain data are unpickled, never code.

Writes are atomic: the bytes go to a temporary file ``.tmp-<name>.<host>.<pid>.*`` in the same folder,
which is flushed, fsynced, renamed over the target, and the folder fsynced. A process killed mid-write
leaves its temporary file behind; the next successful save of the same checkpoint on that host removes
the temporary files of dead processes.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..errors import CheckpointError

__all__: list[str] = []  # internal: used by Model and Model.fit

FORMAT = "pixyz_like.Model/2"
LEGACY_FORMAT = "pixyz_like.Model/1"  # written before checkpoints carried a digest (no longer written)
DIGEST_KEY = "sha256"
_TMP = ".tmp-"


# ---------------------------------------------------------------------- digest
def _to_cpu(obj: Any) -> Any:
    """A copy of the containers of ``obj`` with every tensor on the CPU (CPU tensors are not copied)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _to_cpu(v)
        if isinstance(out, OrderedDict) and hasattr(obj, "_metadata"):  # state dicts' version numbers
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if type(obj) is tuple:
        return tuple(_to_cpu(v) for v in obj)
    return obj


def _feed(h: Any, obj: Any) -> None:
    """Feed a canonical encoding of ``obj`` (type tags, lengths, contents) to the hash ``h``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            flat = t.reshape(-1)
            if flat.stride(0) != 1:  # e.g. one element with stride 0: reshape keeps the view
                flat = flat.clone(memory_format=torch.contiguous_format)
            h.update(flat.view(torch.uint8).numpy().data)
    elif isinstance(obj, Mapping):
        h.update(b"D%d;" % len(obj))
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
        meta = getattr(obj, "_metadata", None)
        if meta is not None:
            h.update(b"M")
            _feed(h, meta)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (str, bytes)):
        data = obj.encode("utf-8", "surrogatepass") if isinstance(obj, str) else obj
        h.update(b"%s%d:" % (type(obj).__name__.encode(), len(data)))
        h.update(data)
    elif obj is None or isinstance(obj, (bool, int, float, complex, torch.dtype, torch.device)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"a checkpoint holds tensors and plain data only, not {type(obj).__name__}")


def digest(obj: Any) -> str:
    """The sha256 (hex) of a canonical encoding of ``obj``: independent of how it was pickled.

    >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.zeros(2)}) != digest({"w": torch.ones(2)})
    True
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _body(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != DIGEST_KEY}


# ---------------------------------------------------------------------- writing
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temporary files of ``name`` left by dead processes of this host (killed mid-write)."""
    if os.name != "posix":  # no safe liveness test of a pid elsewhere: leave them
        return
    prefix = f"{_TMP}{name}.{_host()}."
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


def _fsync_folder(folder: str) -> None:
    """Make the rename durable: fsync the folder's entry list (POSIX; a no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    A crash mid-write leaves the previous file intact (the rename is atomic); a successful save
    removes the temporary files that killed writers of ``path`` left behind.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> atomic_save({"w": torch.zeros(1)}, os.path.join(folder, "c.pt"))
    >>> os.listdir(folder)
    ['c.pt']
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP}{name}.{_host()}.{os.getpid()}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)
    _remove_stale_temporaries(folder, name)


def write_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` (a checkpoint dict with ``"format"``) with its digest, atomically.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c.pt")
    >>> write_checkpoint({"format": FORMAT, "distributions": {"w": torch.ones(2)}}, path)
    >>> state, layout, _ = read_checkpoint(path, "example")
    >>> sorted(state), layout
    (['distributions', 'format', 'sha256'], 'ours')
    """
    body = _to_cpu(_body(state))
    body[DIGEST_KEY] = digest(body)
    atomic_save(body, path)


# ---------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike, where: str) -> tuple[dict[str, Any], str, str]:
    """Load the file at ``path`` (tensors on the CPU) and check its layout and digest.

    Returns ``(state, layout, source)``: the layout as :func:`check_layout` tells it and ``source``,
    ``where`` and the file, to begin messages with. Every failure but a missing file is a
    :class:`~pixyz_like.errors.CheckpointError` naming ``where``, the file and what is wrong.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "junk.pt")
    >>> _ = open(path, "wb").write(b"not a checkpoint")
    >>> read_checkpoint(path, "Model.load()")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.CheckpointError: Model.load(): .../junk.pt is not a readable checkpoint (...)
    """
    source = f"{where}: {os.fspath(path)}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - the bytes are untrusted: any failure to parse means unreadable
        raise CheckpointError(f"{source} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    return state, check_layout(state, source, require_digest=True), source


def check_layout(state: Any, source: str, require_digest: bool) -> str:
    """Which layout ``state`` has (``"ours"``, ``"legacy"`` or ``"pixyz"``), its digest checked.

    >>> check_layout({"distributions": {}}, "example", require_digest=True)
    'pixyz'
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a Model checkpoint (a dict)")
    fmt = state.get("format")
    if fmt == FORMAT:
        if DIGEST_KEY not in state:
            if require_digest:
                raise CheckpointError(
                    f"{source} has no integrity digest ({DIGEST_KEY!r}): it was not written by Model.save or "
                    "Model.fit (to load a state saved with torch.save, use Model.load_state_dict(torch.load(...)))"
                )
            return "ours"
        expected = state[DIGEST_KEY]
        try:
            actual = digest(_body(state))
        except (TypeError, RecursionError) as e:
            raise CheckpointError(f"{source} is corrupted: {e}") from e
        if not isinstance(expected, str) or actual != expected:
            raise CheckpointError(
                f"{source} is corrupted: its contents do not match their sha256 digest (damaged on disk or "
                "edited after writing)"
            )
        return "ours"
    if fmt == LEGACY_FORMAT:
        return "legacy"
    if "format" not in state and set(state) == {"distributions"}:
        return "pixyz"
    what = f"format {fmt!r}" if "format" in state else f"entries {sorted(map(str, state))[:6]}"
    raise CheckpointError(
        f"{source} is not a pixyz_like or Pixyz Model checkpoint ({what}; expected format {FORMAT!r}, or "
        "Pixyz's {'distributions': state_dict})"
    )


# ---------------------------------------------------------------------- entries
_NUMBERS = (bool, int, float, complex, type(None))


def _plain(value: Any, strings: bool, depth: int = 0) -> bool:
    """Tensors, numbers, None (strings if ``strings``), and lists/tuples of them: what optimizers keep
    in their parameter groups (strings there, e.g. L-BFGS's line search) and per-parameter state."""
    if isinstance(value, (torch.Tensor, *_NUMBERS)) or (strings and isinstance(value, str)):
        return True
    if isinstance(value, (list, tuple)) and depth < 4:
        return all(_plain(v, strings, depth + 1) for v in value)
    return False


def check_module_state(value: Any, what: str, source: str) -> Mapping[str, torch.Tensor]:
    """``value`` must be a module's state dict: names to tensors."""
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{source}: {what} must be a state dict (name -> tensor), got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(
                f"{source}: {what} must map names to tensors; entry {k!r} is a {type(v).__name__}"
            )
    return value


def check_optimizer_state(value: Any, what: str, source: str) -> Mapping[str, Any]:
    """``value`` must be an optimizer's state dict: ``state`` by parameter index and ``param_groups``."""
    def bad(detail: str) -> CheckpointError:
        return CheckpointError(f"{source}: {what} is not an optimizer state: {detail}")

    if not isinstance(value, Mapping) or "state" not in value or "param_groups" not in value:
        have = sorted(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
        raise bad(f"expected a dict with 'state' and 'param_groups', got {have}")
    groups, state = value["param_groups"], value["state"]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, Mapping) for g in groups):
        raise bad(f"'param_groups' must be a list of dicts, got {type(groups).__name__}")
    ids: list[Any] = []
    for i, g in enumerate(groups):
        params = g.get("params")
        if not isinstance(params, (list, tuple)) or not all(type(p) is int for p in params):
            raise bad(f"group {i}'s 'params' must be a list of parameter indices")
        if not all(isinstance(k, str) and _plain(v, strings=True) for k, v in g.items()):
            raise bad(f"group {i} holds entries that are not numbers, strings or tensors")
        ids += params
    if len(set(ids)) != len(ids):
        raise bad("a parameter index appears twice in 'param_groups'")
    if not isinstance(state, Mapping):
        raise bad(f"'state' must be a dict, got {type(state).__name__}")
    for k, v in state.items():
        if k not in ids:
            raise bad(f"'state' has an entry for parameter {k!r}, which is in no parameter group")
        if not isinstance(v, Mapping) or not all(isinstance(n, str) and _plain(x, strings=False) for n, x in v.items()):
            raise bad(f"the state of parameter {k!r} must map names to tensors or numbers")
    return value


def check_entries(state: Mapping[str, Any], source: str) -> None:
    """The entries of a pixyz_like checkpoint: each present and of the right kind."""
    for key in ("distributions", "optimizer", "optimizers", "modules"):
        if key not in state:
            raise CheckpointError(f"{source} has no {key!r} entry (entries: {sorted(map(str, state))})")
    check_module_state(state["distributions"], "'distributions'", source)
    check_optimizer_state(state["optimizer"], "'optimizer'", source)
    for key, check in (("optimizers", check_optimizer_state), ("modules", check_module_state)):
        entry = state[key]
        if not isinstance(entry, Mapping) or not all(isinstance(k, str) for k in entry):
            raise CheckpointError(f"{source}: {key!r} must be a dict by name, got {type(entry).__name__}")
        for k, v in entry.items():
            check(v, f"{key}[{k!r}]", source)


def check_number(value: Any, what: str, source: str, integer: bool = True, minimum: int | None = 0) -> Any:
    """``value`` must be an integer (not a bool) at least ``minimum``, or with ``integer=False`` any
    real number (a float or an int)."""
    if integer:
        ok = type(value) is int and (minimum is None or value >= minimum)
        expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    if not ok:
        raise CheckpointError(f"{source}: {what} must be {expected}, got {value!r}")
    return value


# ---------------------------------------------------------------------- Pixyz's parameter names
_PIXYZ_FACTOR = re.compile(r"^((?:[^.]+\.)*)_graph\.(\d+)\.(.+)$")
_OUR_FACTOR = re.compile(r"^((?:[^.]+\.)*)_factors\.(\d+)\.(.+)$")


def _factor_groups(keys_shapes: Mapping[str, Any], pattern: re.Pattern) -> dict[str, dict[int, dict[str, Any]]]:
    """``{prefix: {factor index: {rest of the name: shape}}}`` for the names of factors of products."""
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for name, shape in keys_shapes.items():
        m = pattern.match(name)
        if m:
            groups.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = shape
    return groups


def from_pixyz_names(
    theirs: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename the parameters of Pixyz's products (``..._graph.<i>.<name>``, factors in the order they
    were multiplied) to ours (``..._factors.<j>.<name>``, factors in sampling order).

    Factors are matched by their parameters' names and shapes; factors alike in both are told apart
    only when their values are equal (then either assignment is the same state), otherwise the file
    is refused rather than risk swapping them.
    """
    t_groups = _factor_groups({k: tuple(v.shape) for k, v in theirs.items()}, _PIXYZ_FACTOR)
    if not t_groups:
        return dict(theirs)
    o_groups = _factor_groups({k: tuple(v.shape) for k, v in own.items()}, _OUR_FACTOR)
    renamed: dict[str, str] = {}
    for prefix, t_factors in t_groups.items():
        o_factors = o_groups.get(prefix, {})
        by_sig: dict[frozenset, list[int]] = {}
        for j, names in sorted(o_factors.items()):
            by_sig.setdefault(frozenset(names.items()), []).append(j)
        for i, names in sorted(t_factors.items()):
            sig = frozenset(names.items())
            candidates = by_sig.get(sig)
            if not candidates:
                continue  # left as it is: reported as missing/unexpected by the caller
            alike = [k for k, v in sorted(t_factors.items()) if frozenset(v.items()) == sig]
            if len(alike) > 1 and not _equal_factors(theirs, prefix, alike, names):
                raise CheckpointError(
                    f"{source}: Pixyz's joint {prefix.rstrip('.') or 'distribution'} has factors "
                    f"{alike} with the same parameter names and shapes but different values; which of "
                    "this model's factors each one is cannot be told from the file"
                )
            j = candidates.pop(0)
            for rest in names:
                renamed[f"{prefix}_graph.{i}.{rest}"] = f"{prefix}_factors.{j}.{rest}"
    return {renamed.get(k, k): v for k, v in theirs.items()}


def _equal_factors(theirs: Mapping[str, torch.Tensor], prefix: str, factors: list[int], names: Iterable[str]) -> bool:
    first = factors[0]
    return all(
        torch.equal(theirs[f"{prefix}_graph.{i}.{rest}"], theirs[f"{prefix}_graph.{first}.{rest}"])
        for i in factors[1:]
        for rest in names
    )
