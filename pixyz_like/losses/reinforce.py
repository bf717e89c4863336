r"""The score-function (REINFORCE) estimator of the gradient of an expectation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._batch import infer_batch_n
from .._context import EvalContext
from ..distributions.distributions import Distribution
from ..distributions.protocol import SampleSpec
from ..errors import NotDefinedError
from .losses import Loss, ValueLoss, _as_loss, sample_folded

__all__ = ["REINFORCE"]


class REINFORCE(Loss):
    r"""Monte Carlo :math:`\mathbb{E}_{p(x)}[f(x)]` whose gradient is the score-function (REINFORCE) estimator.

    The value is the plain estimate :math:`\frac1S\sum_s f(x_s)`, :math:`x_s \sim p`, and its
    gradient with respect to the parameters :math:`\theta` of :math:`p` is

    .. math:: \frac1S \sum_s \bigl(f(x_s) - b(x_s)\bigr)\,\nabla_\theta \log p_\theta(x_s)
              + \nabla f(x_s)

    (Williams 1992), where the last term is the gradient of ``f`` with respect to its own parameters
    (the samples themselves carry no gradient). It needs no reparameterisation, so it works for
    discrete variables. The baseline ``b`` (a loss, or a number) reduces the variance and leaves the
    estimator unbiased as long as it does not depend on :math:`x_s`; it receives no gradient here
    (train a learned baseline with its own loss, e.g. :math:`(f - b)^2`).

    This is the "surrogate" trick :math:`f + \mathrm{detach}(f - b)\,(\log p - \mathrm{detach}(\log p))`:
    the added term is zero in value, so, unlike Pixyz's surrogate
    :math:`\mathrm{detach}(f-b)\log p + f - b`, the loss reports the objective itself.

    Args:
        p: the distribution the expectation is over.
        f: the function (a loss) whose expectation is taken, e.g. a reward.
        b: the baseline (default 0).
        sample_shape: the number of draws ``S`` (folded into the batch: every network runs once).
        reparam: must be ``False``: with reparameterised samples the score term would count the
            gradient a second time; use :class:`~pixyz_like.losses.Expectation` for the pathwise
            estimator instead.

    >>> from pixyz_like.distributions import Bernoulli
    >>> q = Bernoulli(probs=torch.tensor([0.5, 0.5, 0.5]), var=["x"], name="q")
    >>> p = Bernoulli(probs=torch.tensor([0.3, 0.3, 0.3]), var=["x"], name="p")
    >>> loss = REINFORCE(q, p.log_prob(), sample_shape=[64])
    >>> print(loss)
    \mathbb{E}^{REINFORCE}_{q(x)} \left[\log p(x) \right]
    >>> loss.eval().shape
    torch.Size([1])
    """

    def __init__(self, p: Distribution, f: Loss | float | torch.Tensor, b: Loss | float | torch.Tensor | None = None,
                 sample_shape: Sequence[int] | torch.Size = torch.Size([1]), reparam: bool = False) -> None:
        if reparam:
            raise NotDefinedError(
                f"REINFORCE({p.prob_text}, ...): reparam=True would add the pathwise gradient to the score "
                "term and count it twice; use Expectation(p, f, reparam=True) for the pathwise estimator"
            )
        f = _as_loss(f)
        b = ValueLoss(0) if b is None else _as_loss(b)
        inputs = [v for v in f.input_var + b.input_var if v not in p.var]
        super().__init__(p.input_var + inputs)
        self.p = p
        self.f = f
        self.b = b
        self.sample_shape = torch.Size(sample_shape)
        self._log_p = p.log_prob()

    def _latex(self) -> str:
        base = self.b
        zero = isinstance(base, ValueLoss) and float(base.value.detach().abs().max()) == 0.0
        head = "\\mathbb{E}^{REINFORCE}" if zero else f"\\mathbb{{E}}^{{REINFORCE, b = {base._latex()}}}"
        return f"{head}_{{{self.p.prob_text}}} \\left[{self.f._latex()} \\right]"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        batch_n = None
        if not any(v in x_dict for v in self.p.input_var):
            batch_n = infer_batch_n(x_dict, self.f.input_var)
        samples, folded, n, batch = sample_folded(self.p, x_dict, ctx, SampleSpec(batch_n, self.sample_shape))
        # Samples must not carry gradient: the score term alone accounts for how they depend on theta.
        folded = {k: v.detach() if k in samples else v for k, v in folded.items()}
        f, _ = self.f._evaluate(folded, ctx)
        b, _ = self.b._evaluate(folded, ctx)
        log_p, _ = self._log_p._evaluate(folded, ctx)
        advantage = (f - b).detach()
        value = f + advantage * (log_p - log_p.detach())
        if n > 1 and value.ndim and value.shape[0] == n * batch:
            value = value.reshape(n, batch, *value.shape[1:]).mean(0)
        return value, samples
