r"""GECO: constrained optimisation of a VAE (Rezende & Viola, "Taming VAEs", 2018).

Minimise an objective (the KL term of a VAE) subject to a constraint on the expected value of a
per-data-point quantity (the reconstruction error), :math:`\mathbb{E}[C(x)] \le \kappa`, through the
Lagrangian

.. math:: \mathcal L = \text{objective} + \lambda\,(C - \kappa).

The multiplier :math:`\lambda` is not trained by the optimizer: after each training evaluation the
batch's constraint :math:`\bar C_t - \kappa` enters a moving average
:math:`m_t = \alpha\, m_{t-1} + (1 - \alpha)(\bar C_t - \kappa)` (:math:`m_1` is the first batch's
value) and :math:`\lambda_t = \lambda_{t-1} \exp(\eta\, m_t)`: it grows while the constraint is
violated and shrinks once it holds, so training settles where the constraint is just met (the
multiplicative update of PopGen's ``GECO``, with its step size :math:`\eta`).

:math:`\lambda` prints in the formula, is a named term of the loss (so ``Model.fit`` logs its value
each step, under the multiplier's name), and lives with the moving average in buffers of a small
module the loss holds, which ``Model.save`` and ``fit``'s checkpoints carry and ``resume`` restores.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .._context import EvalContext
from .._latex import convert_latex_name
from .losses import Loss, ValueLoss, _as_loss, _PrintedAs

__all__ = ["GECO", "LagrangeMultiplier"]


class _GECOState(nn.Module):
    """The multiplier (in logs), the constraint's moving average and the number of updates: buffers,
    so that a model's state dict (and so every checkpoint) holds them."""

    log_multiplier: torch.Tensor
    constraint_average: torch.Tensor
    steps: torch.Tensor
    evaluations: torch.Tensor

    def __init__(self, multiplier: float) -> None:
        super().__init__()
        self.register_buffer("log_multiplier", torch.tensor(math.log(multiplier)))
        self.register_buffer("constraint_average", torch.tensor(0.0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("evaluations", torch.zeros((), dtype=torch.long))


class LagrangeMultiplier(Loss):
    r"""The current value of a GECO multiplier, as a term of the formula: prints as its symbol.

    Made by :class:`GECO` (``geco.multiplier``); its value carries no gradient.

    >>> from pixyz_like.losses import Parameter
    >>> geco = GECO(Parameter("kl"), Parameter("err"), tolerance=1.0, multiplier=2.0)
    >>> lam = geco.lagrange_multiplier
    >>> print(lam), lam.eval()
    \lambda
    (None, tensor(2.))
    """

    def __init__(self, state: _GECOState, name: str = "lambda") -> None:
        super().__init__()
        self.state = state
        self._text = convert_latex_name(name)

    def _latex(self) -> str:
        return self._text

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.state.log_multiplier.detach().exp(), {}


class GECO(_PrintedAs):
    r"""The GECO Lagrangian :math:`\text{objective} + \lambda\,(\text{constraint} - \kappa)`, per data point.

    Args:
        objective: the loss minimised (e.g. ``KullbackLeibler(q, prior)``), one value per data point.
        constraint: the per-data-point quantity whose mean must stay at most ``tolerance``
            (e.g. ``-Expectation(q, LogProb(p))``, the reconstruction error in nats).
        tolerance: :math:`\kappa`, in the constraint's units.
        alpha: the moving average's decay :math:`\alpha`.
        step_size: :math:`\eta` of the update :math:`\lambda \leftarrow \lambda \exp(\eta\, m)`; the
            constraint's scale sets it (``1e-2`` for errors of tens of nats per data point).
        multiplier: the initial :math:`\lambda`.
        min_multiplier, max_multiplier: bounds :math:`\lambda` is kept within.
        name: the multiplier's symbol (``"lambda"`` prints :math:`\lambda` and logs as ``lambda``).
        delay: hold the multiplier at its initial value for the first ``delay`` training evaluations
            (a warm-up as a plain weighted VAE): early on the constraint is violated by far more than
            it will be later, and integrating that violation makes :math:`\lambda` overshoot by
            orders of magnitude and come back slowly.

    The multiplier is updated only by training evaluations, those made in training mode with
    gradients enabled (``Model.train``, ``Model.fit``); ``Model.test`` and ``eval(test_mode=True)``
    read it without changing it, and ``geco.train(False)`` freezes it. The value of an evaluation
    uses the multiplier from before its update. End the formula with ``.mean()`` to train.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.losses import Expectation as E, KullbackLeibler, LogProb
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p")
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="r")
    >>> geco = GECO(KullbackLeibler(q, prior), -E(q, LogProb(p)), tolerance=3.0)
    >>> print(geco)
    D_{KL} \left[q(z|x)||r(z) \right] + \lambda \left(- \mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] - 3.0\right)
    >>> _ = geco.eval({"x": torch.zeros(8, 2)})     # a training evaluation: the multiplier moves
    >>> float(geco.multiplier) != 1.0, int(geco.steps)
    (True, 1)
    """

    _is_term = False
    _formula: Loss  # kept in __dict__, out of the module tree

    def __init__(self, objective: Loss, constraint: Loss, tolerance: float, alpha: float = 0.99,
                 step_size: float = 1e-2, multiplier: float = 1.0, min_multiplier: float = 1e-6,
                 max_multiplier: float = 1e6, name: str = "lambda", delay: int = 0) -> None:
        objective, constraint = _as_loss(objective), _as_loss(constraint)
        for what, v in (("tolerance", tolerance), ("alpha", alpha), ("step_size", step_size),
                        ("multiplier", multiplier), ("min_multiplier", min_multiplier),
                        ("max_multiplier", max_multiplier)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"GECO: {what} must be a finite number, got {v!r}")
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise TypeError(f"GECO: delay must be a non-negative integer, got {delay!r}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"GECO: alpha must lie in [0, 1), got {alpha!r}")
        if not step_size > 0:
            raise ValueError(f"GECO: step_size must be positive, got {step_size!r}")
        if not 0 < min_multiplier <= multiplier <= max_multiplier:
            raise ValueError(f"GECO: need 0 < min_multiplier <= multiplier <= max_multiplier, got "
                             f"{min_multiplier!r}, {multiplier!r}, {max_multiplier!r}")
        super().__init__(objective.input_var + constraint.input_var)
        self.objective = objective
        self.constraint = constraint
        self.lagrange_multiplier = LagrangeMultiplier(_GECOState(float(multiplier)), name)
        self.tolerance, self.alpha, self.step_size = float(tolerance), float(alpha), float(step_size)
        self.delay = delay
        self._log_bounds = (math.log(min_multiplier), math.log(max_multiplier))
        # The printed formula, built once from the same terms (kept out of the module tree).
        self.__dict__["_formula"] = objective + self.lagrange_multiplier * (constraint - ValueLoss(self.tolerance))

    @property
    def _state(self) -> _GECOState:
        return self.lagrange_multiplier.state

    @property
    def multiplier(self) -> torch.Tensor:
        """The current :math:`\\lambda`."""
        return self._state.log_multiplier.detach().exp()

    @property
    def constraint_average(self) -> torch.Tensor:
        """The moving average :math:`m` of the constraint minus the tolerance (negative: it holds)."""
        return self._state.constraint_average.detach().clone()

    @property
    def steps(self) -> torch.Tensor:
        """How many training evaluations have updated the multiplier."""
        return self._state.steps.detach().clone()

    @property
    def _shown(self) -> Loss:
        return self._formula

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        obj, s1 = self.objective._evaluate(x_dict, ctx)
        con, s2 = self.constraint._evaluate(x_dict, ctx)
        lam, _ = self.lagrange_multiplier._evaluate(x_dict, ctx)
        value = obj + lam.to(con.dtype) * (con - self.tolerance)
        if self.training and torch.is_grad_enabled():
            self._update(con.detach())
        return value, {**s1, **s2}

    @torch.no_grad()
    def _update(self, constraint: torch.Tensor) -> None:
        s = self._state
        s.evaluations += 1
        if int(s.evaluations) <= self.delay:
            return
        mean = constraint.float().mean().reshape(1)
        if dist.is_available() and dist.is_initialized():  # every process moves the multiplier alike
            mean = mean.to(s.log_multiplier.device)
            dist.all_reduce(mean)
            mean = mean / dist.get_world_size()
        c = mean.to(s.constraint_average.device).squeeze(0) - self.tolerance
        if int(s.steps) == 0:
            s.constraint_average.copy_(c)
        else:
            s.constraint_average.mul_(self.alpha).add_(c, alpha=1 - self.alpha)
        s.log_multiplier.add_(self.step_size * s.constraint_average).clamp_(*self._log_bounds)
        s.steps += 1
