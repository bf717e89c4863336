r"""Weight schedules: a value as a function of the optimisation step, fed to a loss each step.

A schedule is any callable ``schedule(step: int) -> float``. :meth:`Model.fit
<pixyz_like.models.Model.fit>` evaluates each schedule at the global step (the number of optimizer
steps taken so far, counted across resumes) and puts the value into the input dict under its name, so a
loss written with :class:`~pixyz_like.losses.Parameter` reads it:

>>> from pixyz_like.losses import Parameter
>>> beta = Parameter("beta")                     # loss = (beta * kl - reconstruction).mean()
>>> schedules = {"beta": linear_warmup(0.0, 1.0, steps=1000)}
>>> [schedules["beta"](s) for s in (0, 500, 1000, 5000)]
[0.0, 0.5, 1.0, 1.0]

A schedule depends on the step only (no internal state), so resuming from a checkpoint continues it
exactly.
"""

from __future__ import annotations

import math

__all__ = ["Schedule", "constant", "linear_warmup", "sigmoid_warmup", "sigmoid_annealing"]


def _check(owner: str, steps: int, delay: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"{owner}: steps must be a non-negative integer, got {steps!r}")
    if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
        raise ValueError(f"{owner}: delay must be a non-negative integer, got {delay!r}")


class Schedule:
    r"""Base class of the schedules here: a value :math:`v(t)` at optimisation step :math:`t`.

    Subclasses implement ``__call__(step) -> float``. Any plain function of the step works with
    ``Model.fit`` as well; this class only adds a readable ``repr``.

    >>> class Halving(Schedule):
    ...     def __call__(self, step):
    ...         return 0.5 ** step
    >>> Halving()(3)
    0.125
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class constant(Schedule):  # lower case: used like a function, as the others
    r"""The same value at every step, :math:`v(t) = c`.

    >>> constant(0.1)(0), constant(0.1)(10**6)
    (0.1, 0.1)
    """

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __call__(self, step: int) -> float:
        return self.value


class linear_warmup(Schedule):
    r"""Linear warm-up from ``start`` to ``end`` over ``steps`` steps after ``delay`` steps.

    .. math:: v(t) = a + (b - a)\,\min\!\left(1, \max\!\left(0, \frac{t - d}{T}\right)\right)

    with :math:`a` = ``start``, :math:`b` = ``end``, :math:`T` = ``steps``, :math:`d` = ``delay``.
    This is the KL warm-up of Sønderby et al., "Ladder Variational Autoencoders" (NeurIPS 2016).
    ``steps=0`` jumps to ``end`` at step ``delay``.

    >>> s = linear_warmup(0.0, 1.0, steps=4, delay=2)
    >>> [s(t) for t in range(8)]
    [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, start: float, end: float, steps: int, delay: int = 0) -> None:
        _check("linear_warmup", steps, delay)
        self.start, self.end, self.steps, self.delay = float(start), float(end), steps, delay

    def __call__(self, step: int) -> float:
        if self.steps == 0:
            frac = 1.0 if step >= self.delay else 0.0
        else:
            frac = min(1.0, max(0.0, (step - self.delay) / self.steps))
        return self.start + (self.end - self.start) * frac


class sigmoid_warmup(Schedule):
    r"""Logistic (S-shaped) warm-up from ``start`` to ``end`` over ``steps`` steps after ``delay``.

    With :math:`u = \min(1, \max(0, (t - d)/T))` and the logistic function :math:`\sigma`,

    .. math:: v(t) = a + (b - a)\,\frac{\sigma(k(u - \tfrac12)) - \sigma(-k/2)}{\sigma(k/2) - \sigma(-k/2)}

    so the value is exactly ``start`` at :math:`t \le d`, exactly ``end`` at :math:`t \ge d + T`,
    and ``sharpness`` :math:`k` sets how steep the middle is (the logistic KL annealing of Bowman et
    al., "Generating Sentences from a Continuous Space", CoNLL 2016, rescaled to hit its end points).
    It is not PopGen's schedule, which rises fastest at the start and only approaches its end:
    that one is :class:`sigmoid_annealing`.

    >>> s = sigmoid_warmup(0.0, 1.0, steps=100)
    >>> s(0), round(s(50), 6), s(100)
    (0.0, 0.5, 1.0)
    >>> s(10) < 0.1 * 1.0      # slower than linear at first
    True
    """

    def __init__(self, start: float, end: float, steps: int, delay: int = 0, sharpness: float = 10.0) -> None:
        _check("sigmoid_warmup", steps, delay)
        if not sharpness > 0:
            raise ValueError(f"sigmoid_warmup: sharpness must be positive, got {sharpness!r}")
        self.start, self.end, self.steps, self.delay = float(start), float(end), steps, delay
        self.sharpness = float(sharpness)

    def __call__(self, step: int) -> float:
        if self.steps == 0:
            u = 1.0 if step >= self.delay else 0.0
        else:
            u = min(1.0, max(0.0, (step - self.delay) / self.steps))
        k = self.sharpness

        def sig(v: float) -> float:
            return 1.0 / (1.0 + math.exp(-v))

        lo, hi = sig(-k / 2), sig(k / 2)
        frac = (sig(k * (u - 0.5)) - lo) / (hi - lo)
        # Clamp rounding so that the end points are exact.
        frac = 0.0 if u <= 0.0 else 1.0 if u >= 1.0 else frac
        return self.start + (self.end - self.start) * frac


class sigmoid_annealing(Schedule):
    r"""PopGen's sigmoid annealing: :math:`v(t) = a + (b - a)\,\bigl(2\sigma(r t) - 1\bigr)`.

    With :math:`a` = ``start``, :math:`b` = ``end`` and :math:`r` = ``rate``. It starts at ``start``,
    rises fastest at :math:`t = 0` (the upper half of a logistic curve, :math:`\tanh(r t / 2)`) and
    approaches ``end`` without reaching it: :math:`v = a + 0.76 (b - a)` at :math:`t = 2/r`,
    :math:`a + 0.96 (b - a)` at :math:`t = 4/r`. The default ``rate=1e-4`` is PopGen's
    (``popgen.utils.sigmoid_annealing``, "converges in ~50k gradient updates"). For an S-shaped
    warm-up that reaches ``end`` after a given number of steps, use :class:`sigmoid_warmup`.

    >>> s = sigmoid_annealing()
    >>> s(0), round(s(20000), 4), round(s(50000), 4)
    (0.0, 0.7616, 0.9866)
    >>> sigmoid_annealing(rate=1e-3, start=1.0, end=0.0)(0)
    1.0
    """

    def __init__(self, rate: float = 1e-4, start: float = 0.0, end: float = 1.0) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"sigmoid_annealing: rate must be a positive number, got {rate!r}")
        self.rate, self.start, self.end = float(rate), float(start), float(end)

    def __call__(self, step: int) -> float:
        frac = math.tanh(0.5 * self.rate * max(step, 0))  # = 2 sigmoid(rate * step) - 1
        return self.start + (self.end - self.start) * frac
