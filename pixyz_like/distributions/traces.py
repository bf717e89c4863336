r"""Gen-style traces of a joint distribution: ``simulate``, ``generate`` and importance sampling.

A *trace* records one run of a joint (a product of factors, ``p(x|z) * p(z)``): the value of every
variable, the log-density of each factor at those values, and the total *score*
:math:`\log p(x, z)` (Gen's ``get_score``). A factor that is a
:class:`~pixyz_like.distributions.Deterministic` (for instance a plain network wrapped by
:func:`~pixyz_like.distributions.from_module`) makes no random choice: its log-density in the trace is
0, as for a GenPyTorch generative function.

* :func:`simulate` draws every variable from its factor (Gen's ``simulate``).
* :func:`generate` keeps the observed variables fixed and draws the others from their factors; it
  returns the trace and the *log-weight*, the sum of the observed factors' log-densities (Gen's
  ``generate`` with the model's own factors as the proposal).
* :func:`importance_sample` runs ``generate`` ``k`` times per data point and returns the weighted
  traces and the estimate :math:`\log \frac1k \sum_i w_i` of the log-marginal likelihood of the
  observations (of :math:`\log p(x)` for a joint :math:`p(x|z)p(z)` observed at :math:`x`).

All three work on one batch at a time: every value has a leading batch dimension (``k`` and the
batch for :func:`importance_sample`), every log-density one value per data point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from .._batch import infer_batch_n, repeat_batch
from ..errors import GraphError, NotDefinedError
from .distributions import Distribution
from .joint import underlying
from .special import Deterministic

__all__ = ["Trace", "ImportanceSamples", "simulate", "generate", "importance_sample"]


@dataclass
class Trace:
    r"""One run of a joint distribution.

    Attributes:
        values: every variable (and every input) by name.
        log_probs: each factor's log-density, one value per data point, keyed by the factor's
            variables joined by commas (``"x"``, ``"z"``; ``"x,y"`` for a factor over two); 0 for a
            deterministic factor.
        observed: the variables that were given (:func:`generate`), not drawn.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[1])
    >>> t = simulate(Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * prior, batch_n=3)
    >>> sorted(t.values), sorted(t.log_probs), t.score.shape
    (['x', 'z'], ['x', 'z'], torch.Size([3]))
    """

    values: dict[str, torch.Tensor]
    log_probs: dict[str, torch.Tensor]
    observed: tuple[str, ...] = field(default_factory=tuple)

    @property
    def score(self) -> torch.Tensor:
        """The total log-density :math:`\\log p` of the trace: the sum of the factors' log-densities."""
        return sum(self.log_probs.values())  # type: ignore[return-value]

    @property
    def choices(self) -> dict[str, torch.Tensor]:
        """The values of the variables drawn at random (not observed, not deterministic)."""
        return {k: self.values[k] for k in self._random if k not in self.observed}

    _random: tuple[str, ...] = field(default_factory=tuple, repr=False)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[name]


class ImportanceSamples(NamedTuple):
    r"""The result of :func:`importance_sample`.

    Attributes:
        traces: one :class:`Trace` whose values have shape ``(k, batch, ...)``.
        log_weights: ``(k, batch)``, the sum of the observed factors' log-densities of each trace.
        log_marginal: ``(batch,)``, :math:`\log \frac1k \sum_i \exp(\text{log\_weights}_i)`.

    >>> r = ImportanceSamples(None, torch.zeros(4, 2), torch.zeros(2))
    >>> r.weights.sum(0)
    tensor([1., 1.])
    """

    traces: Trace
    log_weights: torch.Tensor
    log_marginal: torch.Tensor

    @property
    def weights(self) -> torch.Tensor:
        """The normalised importance weights, ``(k, batch)``, summing to 1 over the ``k`` traces."""
        return torch.softmax(self.log_weights, dim=0)


def _is_deterministic(f: Distribution) -> bool:
    """Whether ``f``, under any renaming views, is a :class:`Deterministic` (no random choice)."""
    return isinstance(underlying(f).base, Deterministic)


def _key(f: Distribution) -> str:
    return ",".join(f.var)


def _check_joint(joint: Any, action: str) -> None:
    if not isinstance(joint, Distribution):
        raise TypeError(f"{action}: expected a pixyz_like Distribution (a joint), got {type(joint).__name__}")


def _run(joint: Distribution, inputs: Mapping[str, Any] | None, observations: Mapping[str, Any],
         batch_n: int | None, action: str) -> tuple[Trace, torch.Tensor | None]:
    """Sample the unobserved factors in order, score every factor; return the trace and the log-weight."""
    _check_joint(joint, action)
    inputs = dict(inputs or {})
    unknown = sorted(k for k in observations if k not in joint.var)
    if unknown:
        raise GraphError(f"{action}: {unknown} are not variables of {joint.prob_text} (its variables: {joint.var})")
    work = {**inputs, **observations}
    joint._require(work, joint.input_var, action)
    batch = infer_batch_n(work, list(joint.input_var) + list(observations))
    root_batch = batch if batch is not None else batch_n
    log_probs: dict[str, torch.Tensor] = {}
    log_weight = None
    random: list[str] = []
    for f in joint.factors():
        given = [v for v in f.var if v in observations]
        deterministic = _is_deterministic(f)
        if given and len(given) != len(f.var):
            raise GraphError(f"{action}: {f.prob_text} is observed at {given} but not at "
                             f"{[v for v in f.var if v not in given]}; observe all of its variables or none")
        if given:
            if deterministic:
                raise NotDefinedError(f"{action}: {f.prob_text} is deterministic; its output {given} cannot be "
                                      "observed (a point mass has no density to weigh it by)")
            lp = f.get_log_prob(work)
            log_weight = lp if log_weight is None else log_weight + lp
        else:
            out = f.sample(work, batch_n=None if f.input_var else root_batch, return_all=False)
            work.update(out)
            if deterministic:
                first = next(iter(out.values()))
                lp = torch.zeros(first.shape[:1], dtype=first.dtype if first.is_floating_point() else None,
                                 device=first.device)
            else:
                random.extend(f.var)
                lp = f.get_log_prob(work)
        log_probs[_key(f)] = lp
    trace = Trace(values=work, log_probs=log_probs, observed=tuple(observations), _random=tuple(random))
    return trace, log_weight


def simulate(joint: Distribution, inputs: Mapping[str, Any] | None = None, batch_n: int | None = None) -> Trace:
    r"""Draw every variable of ``joint`` given its inputs; the trace of that run.

    ``trace.score`` equals ``joint.get_log_prob(trace.values)`` (when no factor is deterministic);
    ``batch_n`` sets the batch of a joint without inputs.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> joint = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * prior
    >>> t = simulate(joint, batch_n=4)
    >>> torch.allclose(t.score, joint.get_log_prob(t.values))
    True
    """
    trace, _ = _run(joint, inputs, {}, batch_n, "simulate")
    return trace


def generate(joint: Distribution, inputs: Mapping[str, Any] | None = None,
             observations: Mapping[str, Any] | None = None,
             batch_n: int | None = None) -> tuple[Trace, torch.Tensor]:
    r"""Run ``joint`` with the ``observations`` fixed; return ``(trace, log_weight)``.

    The unobserved variables are drawn from their factors (given the observed ones where a factor
    depends on them); ``log_weight`` is the sum of the observed factors' log-densities, one value per
    data point (zeros when nothing is observed). Observing only some variables of a factor, or the
    output of a deterministic factor, is refused.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[1])
    >>> joint = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * prior
    >>> trace, log_w = generate(joint, observations={"x": torch.zeros(3, 1)})
    >>> torch.allclose(log_w, trace.log_probs["x"]), trace.observed
    (True, ('x',))
    """
    observations = dict(observations or {})
    trace, log_weight = _run(joint, inputs, observations, batch_n, "generate")
    if log_weight is None:
        log_weight = torch.zeros_like(trace.score)
    return trace, log_weight


def _fold(values: Mapping[str, Any], k: int, batch: int) -> dict[str, Any]:
    return {name: repeat_batch(v, k) if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch else v
            for name, v in values.items()}


def _unfold(values: Mapping[str, Any], k: int, batch: int) -> dict[str, Any]:
    return {name: v.reshape(k, batch, *v.shape[1:])
            if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == k * batch else v
            for name, v in values.items()}


def importance_sample(joint: Distribution, observations: Mapping[str, Any], k: int,
                      inputs: Mapping[str, Any] | None = None) -> ImportanceSamples:
    r"""``k`` weighted traces per data point, and the log-marginal estimate of the observations.

    Each trace comes from :func:`generate`; with ``w_i`` the weights,
    :math:`\log \hat p = \log \frac1k \sum_{i=1}^k w_i` is an unbiased estimate of :math:`p` in the
    exponent (so a lower bound on :math:`\log p` in expectation, tight as ``k`` grows). The ``k`` runs
    are folded into the batch, so each network runs once on ``k * batch`` rows.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[1])
    >>> joint = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * prior
    >>> r = importance_sample(joint, {"x": torch.zeros(2, 1)}, k=5000)
    >>> r.log_weights.shape, r.traces["z"].shape
    (torch.Size([5000, 2]), torch.Size([5000, 2, 1]))
    >>> exact = torch.distributions.Normal(0., math.sqrt(2.)).log_prob(torch.zeros(2))   # x ~ N(0, 2)
    >>> bool((r.log_marginal - exact).abs().max() < 0.05)
    True
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"importance_sample: k must be a positive integer, got {k!r}")
    inputs = dict(inputs or {})
    observations = dict(observations)
    batch = infer_batch_n({**inputs, **observations}, list(inputs) + list(observations))
    if batch is None:
        batch = 1
    trace, log_w = generate(joint, _fold(inputs, k, batch), _fold(observations, k, batch), batch_n=k * batch)
    traces = Trace(values=_unfold(trace.values, k, batch), log_probs=_unfold(trace.log_probs, k, batch),
                   observed=trace.observed, _random=trace._random)
    log_w = log_w.reshape(k, batch)
    log_marginal = torch.logsumexp(log_w, dim=0) - math.log(k)
    return ImportanceSamples(traces, log_w, log_marginal)
