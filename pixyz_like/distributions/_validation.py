r"""Validation of the parameters and scored values of the parametric families.

Every parametric family declares the domain of each parameter (a Normal ``scale`` is positive and
finite, Bernoulli ``probs`` lie in :math:`[0, 1]`, Categorical ``probs`` are non-negative weights...)
and the support of its variable (a Bernoulli value lies in :math:`[0, 1]`, which admits Pixyz's
grey-level MNIST targets; a Categorical value is one-hot...). While validation is on, the parameters
are checked each time they are computed (from ``forward()``, a conditioning variable or a constant)
and a value each time it is scored; a parameter outside its domain raises
:class:`~pixyz_like.errors.ParameterError` and a value outside the support
:class:`~pixyz_like.errors.SupportError`, naming the distribution, the parameter or variable, the first
offending entry and its index. So a NaN in the data or a negative scale stops the step where it
happens, before it becomes a NaN loss and NaN weights.

Validation is **on by default**, as in :mod:`torch.distributions`. The one switch is
:class:`set_validation`: ``pixyz_like.set_validation(False)`` turns it off for the process (for speed,
once a program is known to be correct), and ``with pixyz_like.set_validation(False):`` for a block.
Inside :func:`torch.compile` the checks are skipped (a data-dependent branch would split the graph).

Cost: every check is a bound on the minimum and maximum of a tensor (a scale's minimum is above 0 and
its maximum below infinity; NaN fails every bound), so each parameter and value costs one
``torch.aminmax`` (two or three for the event families: the sums over the last dimension, integer
counts; one sum for a domain that is finiteness alone, see :func:`surely_finite`), and on an
accelerator all the extrema of one call are read back in a single host synchronisation. Only when a
bound fails are the offending entries looked for. A family whose log-density is NaN or infinite
whenever a parameter or the value is invalid (the Normal) is scored with one check of the
log-density instead (:func:`surely_finite`, one sum; a joint checks the total of such factors once),
and its parameters are looked at only to name the culprit when that check fails.
``benchmarks/bench_validation.py`` measures the cost on the core benchmark.

>>> import torch
>>> import pixyz_like
>>> from pixyz_like.distributions import Normal
>>> p = Normal(loc="y", scale=1.0, var=["x"], cond_var=["y"])
>>> p.sample({"y": torch.tensor([[0.0, float("nan")]])})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pixyz_like.errors.ParameterError: p(x|y) (Normal): parameter 'loc' (conditioning variable 'y') must be finite, ...
>>> with pixyz_like.set_validation(False):
...     p.sample({"y": torch.tensor([[0.0, float("nan")]])})["x"].isnan().any().item()
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch

from ..errors import ParameterError, SupportError

__all__ = ["Constraint", "set_validation", "validation_enabled", "check"]

_ENABLED = [True]  # the process-wide switch (a list so that the functions below can set it)

_Test = Callable[[torch.Tensor], torch.Tensor]


class set_validation:
    """Turn the validation of parameters and values on or off.

    A plain call sets it for the process; used as a context manager, it sets it for the block and
    restores the previous setting afterwards (like :class:`torch.set_grad_enabled`).

    Args:
        enabled: ``True`` (the default setting) checks every parameter and scored value; ``False``
            skips the checks, for speed.

    >>> import pixyz_like
    >>> with pixyz_like.set_validation(False):
    ...     pixyz_like.validation_enabled()
    False
    >>> pixyz_like.validation_enabled()
    True
    """

    def __init__(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"set_validation(enabled): enabled must be True or False, got {enabled!r}")
        self._previous = _ENABLED[0]
        _ENABLED[0] = enabled

    def __enter__(self) -> set_validation:
        return self

    def __exit__(self, *exc: object) -> None:
        _ENABLED[0] = self._previous


def validation_enabled() -> bool:
    """Whether parameters and scored values are validated (see :class:`set_validation`).

    >>> validation_enabled()
    True
    """
    return _ENABLED[0]


class Probe:
    """One bound test of a constraint: ``lo <= f(t) <= hi`` for every entry of ``f(t)`` (strict where
    asked), decided from the minimum and maximum of ``f(t)`` alone (a NaN fails every bound).

    Args:
        what: what ``f(t)`` is, for messages: ``"entry"``, ``"fractional part of entry"`` or
            ``"sum of the event"`` (an event probe: ``f`` reduces the last dimension).
        f: the derived tensor (``None``: ``t`` itself).
        lo, hi: the bounds; ``hi`` may be a function of ``t`` (a tolerance depending on its dtype).
        strict: ``(lo strict, hi strict)``.

    >>> Probe("entry", None, 0.0, math.inf, (True, True)).holds(0.5, 2.0, torch.zeros(1))
    True
    """

    __slots__ = ("what", "f", "lo", "hi", "strict", "event")

    def __init__(self, what: str, f: _Test | None, lo: float, hi: float | Callable[[torch.Tensor], float],
                 strict: tuple[bool, bool] = (False, False)) -> None:
        self.what, self.f, self.lo, self.hi, self.strict = what, f, lo, hi, strict
        self.event = what.startswith("sum")

    def derived(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t if self.f is None else self.f(t)

    def holds(self, mn: float, mx: float, t: torch.Tensor) -> bool:
        lo, hi = self.lo, self.hi
        if callable(hi):
            hi = hi(t)
        strict_lo, strict_hi = self.strict
        return (mn > lo if strict_lo else mn >= lo) and (mx < hi if strict_hi else mx <= hi)

    def elementwise(self, t: torch.Tensor) -> torch.Tensor:
        """Where ``f(t)`` is within the bounds (the slow path of an error message)."""
        d = self.derived(t)
        hi = self.hi(t) if callable(self.hi) else self.hi
        lo_ok = d > self.lo if self.strict[0] else d >= self.lo
        return lo_ok & ((d < hi) if self.strict[1] else (d <= hi))


def _range_test(probe: Probe) -> Callable[[float, float], bool]:
    """``lo <= mn and mx <= hi`` (strict where ``probe`` is), written out for each strictness: what
    :meth:`Probe.holds` decides for a bound that does not depend on the tensor, without its lookups."""
    lo, hi = probe.lo, cast(float, probe.hi)
    strict_lo, strict_hi = probe.strict
    if strict_lo:
        return (lambda mn, mx: lo < mn and mx < hi) if strict_hi else (lambda mn, mx: lo < mn and mx <= hi)
    return (lambda mn, mx: lo <= mn and mx < hi) if strict_hi else (lambda mn, mx: lo <= mn and mx <= hi)


class Constraint:
    """The domain of a parameter or the support of a value, as bound tests (:class:`Probe`) on the
    entries and, for event families, on each event's sum over the last dimension.

    Checking a tensor costs one ``aminmax`` per probe; only when a bound fails are the offending
    entries looked for.

    >>> positive = Constraint("positive", [Probe("entry", None, 0.0, math.inf, (True, False))])
    >>> positive.violation(torch.tensor([1.0, 2.0])) is None
    True
    >>> positive.violation(torch.tensor([1.0, -2.0]))
    'entry (1,) is -2.0 (1 of 2 entries are not)'
    """

    __slots__ = ("text", "probes", "single", "within")

    def __init__(self, text: str, probes: Sequence[Probe]) -> None:
        self.text = text
        self.probes = tuple(probes)
        # The usual case, one bound on the entries themselves, gets a fast path in check().
        only = self.probes[0] if len(self.probes) == 1 else None
        self.single = only if only is not None and only.f is None and not callable(only.hi) else None
        #: ``within(mn, mx)``: whether entries whose extrema are ``mn`` and ``mx`` lie in the domain, one
        #: comparison chain (a NaN fails it; ``within(v, v)`` for one number); ``None`` for a domain that is
        #: not one bound on the entries.
        self.within: Callable[[float, float], bool] | None = None if self.single is None else _range_test(self.single)

    def violation(self, t: torch.Tensor) -> str | None:
        """``None`` when ``t`` satisfies the constraint, else where it fails."""
        probes = _probes_for(t, self)
        for probe, (mn, mx) in zip(probes, _read([torch.aminmax(p.derived(t)) for p in probes], t.device.type)):
            if not probe.holds(mn, mx, t):
                found = self.explain(t, probe)
                if found is not None:
                    return found
        return None

    def explain(self, t: torch.Tensor, probe: Probe) -> str | None:
        """Where ``t`` fails ``probe``: the first offending entry (or event), its index and the count
        (``None`` if no entry fails after all)."""
        bad = ~probe.elementwise(t)
        hits = bad.nonzero()
        if not len(hits):
            return None
        idx = tuple(int(i) for i in hits[0])
        if probe.event:
            total = t[idx].sum().item()
            return (f"the event at {idx} sums to {total!r} over the last dimension ({int(bad.sum())} of "
                    f"{bad.numel()} events are not)")
        d = probe.derived(t)[idx].item()
        shown = f"{t[idx].item()!r}" + ("" if probe.f is None else f" (fractional part {d!r})")
        return f"entry {idx} is {shown} ({int(bad.sum())} of {t.numel()} entries are not)"


def _probes_for(t: torch.Tensor, c: Constraint) -> tuple[Probe, ...]:
    """The probes that apply to ``t``: none for an empty tensor, no event probe for a 0-dim one."""
    if t.numel() == 0:
        return ()
    return c.probes if t.ndim else tuple(p for p in c.probes if not p.event)


def _read(extrema: list, device_type: str) -> list[tuple[float, float]]:
    """The extrema as Python floats: on an accelerator, in one host synchronisation."""
    if device_type == "cpu":
        return [(mn.item(), mx.item()) for mn, mx in extrema]
    wide = torch.float32 if device_type == "mps" else torch.float64  # exact for every float dtype there
    flat = torch.stack([m.to(wide) for pair in extrema for m in pair]).tolist()
    return list(zip(flat[0::2], flat[1::2]))


def _simplex_tolerance(t: torch.Tensor) -> float:
    # Rounding of K entries each within eps/2 of the true value; never tighter than torch's 1e-6.
    return max(1e-6, 2 * t.shape[-1] * torch.finfo(t.dtype).eps) if t.is_floating_point() else 0.0


def _entries(lo: float, hi: float, strict: tuple[bool, bool]) -> Probe:
    return Probe("entry", None, lo, hi, strict)


def _sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(-1)


_INTEGER = Probe("fractional part of entry", torch.frac, 0.0, 0.0)
_INF = math.inf
FINITE = Constraint("finite", [_entries(-_INF, _INF, (True, True))])
POSITIVE = Constraint("positive and finite", [_entries(0.0, _INF, (True, True))])
NONNEGATIVE = Constraint("non-negative and finite", [_entries(0.0, _INF, (False, True))])
UNIT_INTERVAL = Constraint("in [0, 1]", [_entries(0.0, 1.0, (False, False))])
WEIGHTS = Constraint(
    "non-negative finite weights over the last dimension, not all zero",
    [_entries(0.0, _INF, (False, True)), Probe("sum of the event", _sum, 0.0, _INF, (True, False))],
)
SIMPLEX = Constraint(
    "on the simplex (entries in [0, 1] summing to 1 over the last dimension)",
    [_entries(0.0, 1.0, (False, False)),
     Probe("sum deviation of the event", lambda t: (t.sum(-1) - 1).abs(), 0.0, _simplex_tolerance)],
)
ONE_HOT = Constraint(
    "one-hot over its last dimension (use torch.nn.functional.one_hot for class indices)",
    [_entries(0.0, 1.0, (False, False)), _INTEGER, Probe("sum of the event", _sum, 1.0, 1.0)],
)


def counts(total_count: int) -> Constraint:
    """Non-negative integer counts over the last dimension summing to ``total_count``.

    >>> counts(3).violation(torch.tensor([1.0, 2.0])) is None
    True
    >>> counts(3).violation(torch.tensor([1.5, 1.5]))
    'entry (0,) is 1.5 (fractional part 0.5) (2 of 2 entries are not)'
    """
    return Constraint(
        f"non-negative integer counts over the last dimension summing to total_count={total_count}",
        [_entries(0.0, _INF, (False, True)), _INTEGER, Probe("sum of the event", _sum, total_count, total_count)],
    )


__all__ += ["Probe", "counts"]

#: one item to check: (its name, the tensor, its constraint); ``describe(name)`` says what it is in an error.
Item = tuple[str, torch.Tensor, Constraint]


def _text(owner: str | Callable[[], str]) -> str:
    return owner() if callable(owner) else owner


def check(
    owner: str | Callable[[], str],
    items: Sequence[Item],
    error: type[Exception] = ParameterError,
    describe: Callable[[str], str] = str,
) -> None:
    """Check each tensor against its constraint; raise ``error`` naming the first that fails.

    All the tests end in one reduction and one host synchronisation; nothing is done while
    validation is off (see :class:`set_validation`) or inside :func:`torch.compile`. ``owner`` (the
    distribution, or a function returning its text) and ``describe`` are used only to word an error.

    >>> check("p(x) (Normal)", [("parameter 'scale'", torch.tensor([1.0, -1.0]), POSITIVE)])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.ParameterError: p(x) (Normal): parameter 'scale' must be positive and finite, but entry (1,) ...
    """
    if not _ENABLED[0] or torch.compiler.is_compiling():
        return
    rest = []
    for item in items:
        t, c = item[1], item[2]
        within = c.within
        n = t.numel()
        if within is None or not n or not t.is_cpu:
            rest.append(item)
            continue
        # On the CPU reading a number back is cheap: one read for a single number (a parameter given
        # as a Python number, a scalar constant), else one aminmax and two reads per tensor.
        if n == 1:
            mn = mx = t.item()
        elif c is FINITE and surely_finite(t):
            continue  # (finiteness alone: the sum screen, a third cheaper; a false alarm reads the extrema)
        else:
            lo, hi = torch.aminmax(t.detach() if t.requires_grad else t)
            mn, mx = lo.item(), hi.item()
        if not within(mn, mx):
            _fail(owner, error, describe(item[0]), c, t, c.probes[0])
    if rest:
        _check_all(owner, rest, error, describe)


def _check_all(owner: str | Callable[[], str], items: Sequence[Item], error: type[Exception],
               describe: Callable[[str], str]) -> None:
    """The general path: every probe of every item, read back in one host synchronisation."""
    pending = [(name, t, c, p) for name, t, c in items for p in _probes_for(t, c)]
    if not pending:
        return
    values = _read([torch.aminmax(p.derived(t)) for _, t, _, p in pending], items[0][1].device.type)
    for (name, t, c, probe), (mn, mx) in zip(pending, values):
        if not probe.holds(mn, mx, t):
            _fail(owner, error, describe(name), c, t, probe)


def _fail(owner: str | Callable[[], str], error: type[Exception], what: str, c: Constraint, t: torch.Tensor,
          probe: Probe) -> None:
    found = c.explain(t, probe)
    if found is not None:  # (a bound that failed only through rounding of the extrema raises nothing)
        raise error(f"{_text(owner)}: {what} must be {c.text}, but {found}")


_LOW = (torch.float16, torch.bfloat16)


def surely_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is surely finite, by one sum and one read: a finite sum proves every
    entry finite; a NaN or infinite entry makes it NaN or infinite. ``False`` also when finite entries
    overflow their sum (rare in float32, as every caller knows: it then looks at the entries one by one
    and lets a value stand if none is invalid). ``True`` while validation is off or inside
    :func:`torch.compile`. (A sum is about 5k instructions cheaper than the two extrema; the gradient
    graph it may record is dropped with it.)

    >>> surely_finite(torch.tensor([0.0, -1.0])), surely_finite(torch.tensor([0.0, float("nan")]))
    (True, False)
    >>> surely_finite(torch.tensor([math.inf, -math.inf]))  # (inf - inf is NaN)
    False
    """
    if not _ENABLED[0] or torch.compiler.is_compiling():
        return True
    total = t.sum(dtype=torch.float32) if t.dtype in _LOW else t.sum()  # (half precision overflows at 65504)
    return math.isfinite(total.item())


def surely_finite_many(tensors: Sequence[torch.Tensor], shapes: Sequence[tuple[int, ...]] | None = None) -> bool:
    """:func:`surely_finite` of several tensors at once: one sum and one read for them all, their entries
    side by side in one tensor (torch's type promotion keeps every finite entry finite and every NaN or
    infinite one so); on several devices, each in turn. ``shapes``, the tensors' shapes when the caller
    knows them, lets tensors that differ in their last dimension only be joined along it (one call,
    ~1.4k instructions a tensor) rather than flattened first (~4k).

    >>> surely_finite_many([torch.zeros(2, 3), torch.ones(4)])
    True
    >>> surely_finite_many([torch.zeros(2), torch.tensor([math.inf])])
    False
    >>> surely_finite_many([torch.zeros(5, 2), torch.ones(5, 3)], [(5, 2), (5, 3)])
    True
    """
    if not _ENABLED[0] or torch.compiler.is_compiling():
        return True
    if len(tensors) == 1:
        return surely_finite(tensors[0])
    try:
        # (no no_grad block, which costs more than the gradient graph a sample that carries one records
        # here, dropped on return)
        if shapes is not None and _joinable(shapes):
            joined = torch.cat(list(tensors), -1)
        else:
            joined = torch._C._nn.flatten_dense_tensors(list(tensors))
    except RuntimeError:  # (tensors on several devices cannot be joined)
        return all(surely_finite(t) for t in tensors)
    return surely_finite(joined)


def _joinable(shapes: Sequence[tuple[int, ...]]) -> bool:
    """Whether tensors of these shapes join along their last dimension: one number of dimensions, at
    least one, and the same sizes but in the last."""
    first = shapes[0]
    n = len(first)
    if not n:
        return False
    for s in shapes:
        if len(s) != n or (n > 1 and (s[0] != first[0] or (n > 2 and s[1:-1] != first[1:-1]))):
            return False
    return True


__all__ += ["surely_finite", "surely_finite_many"]


def check_value(owner: str | Callable[[], str], var: str, value: torch.Tensor, support: Constraint | None) -> None:
    """Check a scored value against its family's support; raise :class:`~pixyz_like.errors.SupportError`.

    >>> check_value("p(x) (Bernoulli)", "x", torch.tensor([0.0, 0.5, 1.0]), UNIT_INTERVAL)
    >>> check_value("p(x) (Bernoulli)", "x", torch.tensor([0.0, 2.0]), UNIT_INTERVAL)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.SupportError: p(x) (Bernoulli): variable 'x' must be in [0, 1], but entry (1,) is 2.0 ...
    """
    if support is not None:
        check(owner, [(var, value, support)], SupportError, lambda v: f"variable {v!r}")


__all__ += ["check_value"]
