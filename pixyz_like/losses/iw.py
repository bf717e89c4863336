r"""Importance-weighted bounds and estimates of the marginal likelihood :math:`\log p(x)`.

With a proposal :math:`q(z|x)` and :math:`z_1, \dots, z_k \sim q(z|x)` independently,

.. math:: \hat p(x) = \frac1k \sum_{i=1}^k w_i, \qquad w_i = \frac{p(x, z_i)}{q(z_i|x)}

is an unbiased estimate of :math:`p(x)`, so :math:`\mathbb{E}[\log \hat p(x)] \le \log p(x)` (Jensen).
This bound is the IWAE objective (Burda et al. 2016): it equals the ELBO for :math:`k=1`, never
decreases with :math:`k` and tends to :math:`\log p(x)`. The log-sum-exp is taken over the :math:`k`
samples of each data point separately; averaging the weights across the batch first (as Pyro's
``RenyiELBO`` does for local latent variables) gives a different, wrong, quantity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .._batch import infer_batch_n
from .._context import EvalContext
from .._latex import convert_latex_name
from ..distributions.distributions import Distribution, DistributionBase
from ..distributions.joint import underlying
from ..distributions.protocol import SUMMED, SampleSpec
from ..errors import MissingVariableError, VariableMismatchError, missing_variable_error
from .losses import Loss, _fold_dict, sample_folded

__all__ = ["IWAE", "log_marginal"]

# Rows (samples x data points) evaluated at once by log_marginal when no chunk size is given. On CPU
# small chunks stay in cache: for the quick-start VAE (784-512-64, one thread) 1024 rows ran about 1.5x
# faster than 16384 (benchmarks/bench_log_marginal.py). A GPU needs large chunks to be busy.
_ROW_BUDGET_CPU = 1024
_ROW_BUDGET_GPU = 65536


def _check(owner: str, p: Distribution, q: Distribution) -> list[str]:
    """The observed variables of ``p`` (those ``q`` does not produce); refuse a ``q`` outside ``p``."""
    extra = [v for v in q.var if v not in p.var]
    if extra:
        raise VariableMismatchError(
            f"{owner}: the proposal {q.prob_text} draws {extra}, which the joint {p.prob_text} is not over; "
            "q must draw latent variables of p"
        )
    observed = [v for v in p.var if v not in q.var]
    if not observed:
        raise VariableMismatchError(
            f"{owner}: the joint {p.prob_text} has no observed variable left once {q.prob_text} draws {q.var}"
        )
    return observed


def _log_weights(p: Distribution, q: Distribution, observed: list[str], x_dict: dict[str, Any], ctx: EvalContext,
                 k: int, reparam: bool, folded_inputs: dict[str, Any] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``log p(x, z_i) - log q(z_i|x)`` for ``k`` draws per data point: shape ``(k, batch)``.

    ``folded_inputs``, if given, is ``x_dict`` already folded for ``k`` draws (batch-first tensors
    repeated ``k`` times), made once by a caller that evaluates many chunks of the same size."""
    batch_n = None if any(v in x_dict for v in q.input_var) else infer_batch_n(x_dict, observed)
    spec = SampleSpec(batch_n, torch.Size([k]), reparam and q.has_reparam)
    if folded_inputs is None:
        samples, folded, n, batch = sample_folded(q, x_dict, ctx, spec)
    else:
        samples = q._sample(x_dict, ctx=ctx, spec=spec)
        first = next(iter(samples.values()))
        batch = first.shape[1] if first.ndim > 1 else 1
        folded = {**folded_inputs, **{v: t.reshape(k * batch, *t.shape[2:]) for v, t in samples.items()}}
    # The joint runs once on k * batch rows (its networks need a plain batch dimension).
    log_p = p._log_prob(folded, ctx=ctx, spec=SUMMED).reshape(k, batch)
    log_q = None
    if isinstance(underlying(q).base, DistributionBase):
        # A parametric family scores the (k, batch, ...) draws by broadcasting against the parameters it
        # computed for the batch when sampling (memoised in ctx): its network is not rerun on k * batch rows.
        log_q = q._log_prob({**x_dict, **samples}, ctx=ctx, spec=SUMMED)
        if log_q.shape != (k, batch):
            log_q = None
    if log_q is None:
        log_q = q._log_prob(folded, ctx=ctx, spec=SUMMED).reshape(k, batch)
    return log_p - log_q, samples


def _latex_with_index(dist: Distribution, marked: list[str]) -> str:
    """``dist``'s formula with the variables in ``marked`` written ``z^{(i)}``."""

    def name(v: str) -> str:
        text = convert_latex_name(v)
        if v not in marked:
            return text
        return f"{{{text}}}^{{(i)}}" if "^" in text else f"{text}^{{(i)}}"

    body = ",".join(name(v) for v in dist.var)
    cond = ",".join(name(v) for v in dist.cond_var)
    return f"{convert_latex_name(dist.name)}({body}{'|' + cond if cond else ''})"


class IWAE(Loss):
    r"""The importance-weighted bound :math:`\log \frac1k \sum_{i=1}^k \frac{p(x,z_i)}{q(z_i|x)}` (Burda et al. 2016).

    One value per data point; :math:`\mathbb{E}[\mathrm{IWAE}_k] \le \log p(x)`, equal to the ELBO for
    ``k=1`` and rising with ``k``. Maximise it (minimise ``-IWAE(...).mean()``) to train a VAE with
    the IWAE objective. The ``k`` draws are folded into the batch (the joint's networks run once on
    ``k * batch`` rows; a parametric ``q`` scores its draws without rerunning its network) and the
    log-sum-exp is taken per data point.

    Args:
        p: the joint over the observed and latent variables, e.g. ``p(x|z) * p_prior(z)``.
        q: the proposal over the latent variables, e.g. ``q(z|x)``.
        k: the number of importance samples.
        reparam: draw reparameterised samples (needed for gradients through ``q``).

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p") * prior
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> bound = IWAE(p, q, k=5)
    >>> print(bound)
    \log \frac{1}{5} \sum_{i=1}^{5} \frac{p(x,z^{(i)})}{q(z^{(i)}|x)}
    >>> bound.eval({"x": torch.zeros(3, 2)}).shape
    torch.Size([3])
    """

    _greedy = True  # \log \frac1k \sum_i ... runs to the right: bracketed when not last in a formula

    def __init__(self, p: Distribution, q: Distribution, k: int = 5, reparam: bool = True) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"IWAE: k must be a positive integer, got {k!r}")
        self._observed = _check("IWAE", p, q)
        super().__init__(q.input_var + [v for v in self._observed + p.input_var if v not in q.var])
        self.p = p
        self.q = q
        self.k = k
        self.reparam = reparam

    def _latex(self) -> str:
        ratio = f"\\frac{{{_latex_with_index(self.p, self.q.var)}}}{{{_latex_with_index(self.q, self.q.var)}}}"
        return f"\\log \\frac{{1}}{{{self.k}}} \\sum_{{i=1}}^{{{self.k}}} {ratio}"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        log_w, samples = _log_weights(self.p, self.q, self._observed, x_dict, ctx, self.k, self.reparam)
        return torch.logsumexp(log_w, dim=0) - math.log(self.k), samples


def log_marginal(p: Distribution, q: Distribution, x_dict: Mapping[str, Any], k: int = 5000,
                 chunk: int | None = None) -> torch.Tensor:
    r"""Estimate :math:`\log p(x)` of each data point by importance sampling with ``k`` draws of ``q``.

    .. math:: \log p(x) \approx \log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i|x)}, \quad z_i \sim q(z|x)

    the standard evaluation of latent-variable models (Burda et al. 2016 use ``k=5000``). The
    estimate is biased low by about :math:`\mathrm{Var}[w]/(2k\,\mathbb{E}[w]^2)`; a ``q`` close to
    the posterior (a trained encoder) keeps it small. The draws are taken ``chunk`` at a time and
    combined with a running log-sum-exp, so the memory does not grow with ``k``; by default a chunk
    holds about 1024 rows (``chunk * batch``) on CPU, where small chunks stay in cache, and 65536 on
    a GPU. Runs without gradients and leaves the networks' train/eval mode
    as it is (call ``.eval()`` on models with dropout or batch norm first).

    Args:
        p: the joint, e.g. ``p(x|z) * p_prior(z)``.
        q: the proposal over the latent variables, e.g. the encoder ``q(z|x)``.
        x_dict: the observed (and conditioning) variables, batch first.
        k: the number of importance samples per data point.
        chunk: how many samples per data point to evaluate at once.

    Returns a tensor of shape ``(batch,)``.

    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[1], name="p_{prior}")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p") * prior
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> x = torch.tensor([[0.0], [2.0]])
    >>> exact = torch.distributions.Normal(0., 2 ** 0.5).log_prob(x).squeeze(1)  # x ~ N(0, 2)
    >>> bool((log_marginal(p, q, {"x": x}, k=5000) - exact).abs().max() < 0.05)
    True
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"log_marginal: k must be a positive integer, got {k!r}")
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise ValueError(f"log_marginal: chunk must be a positive integer, got {chunk!r}")
    observed = _check("log_marginal", p, q)
    if not isinstance(x_dict, Mapping):
        raise TypeError(f"log_marginal: x_dict must be a dict of tensors, got {type(x_dict).__name__}")
    x_dict = dict(x_dict)
    needed = list(dict.fromkeys(q.input_var + [v for v in observed + p.input_var if v not in q.var]))
    missing = [v for v in needed if v not in x_dict]
    if missing:
        raise missing_variable_error(f"log_marginal({p.prob_text}, {q.prob_text})", "estimating", missing,
                                     x_dict.keys())
    batch = infer_batch_n(x_dict, observed)
    if batch is None:
        raise MissingVariableError(f"log_marginal: the observed variables {observed} must be batch-first tensors")
    if chunk is None:
        first = next(x_dict[v] for v in observed if isinstance(x_dict.get(v), torch.Tensor))
        budget = _ROW_BUDGET_CPU if first.device.type == "cpu" else _ROW_BUDGET_GPU
        chunk = max(1, budget // batch)
    chunk = min(chunk, k)
    total: torch.Tensor | None = None
    done = 0
    # The inputs repeated once for all the chunks of one size, not once per chunk: for the quick-start
    # VAE a fresh copy of x per chunk cost a few percent, and up to a quarter in page faults under
    # glibc's default trimming. A fresh context per chunk: the memo would otherwise keep every chunk's
    # tensors alive.
    folded: dict[int, dict[str, Any]] = {}
    with torch.no_grad():
        while done < k:
            c = min(chunk, k - done)
            if c not in folded:
                folded = {c: _fold_dict(x_dict, c, batch)}
            log_w, _ = _log_weights(p, q, observed, x_dict, EvalContext(), c, False, folded[c])
            lse = torch.logsumexp(log_w, dim=0)
            total = lse if total is None else torch.logaddexp(total, lse)
            done += c
    assert total is not None  # k >= 1: at least one chunk
    return total - math.log(k)
