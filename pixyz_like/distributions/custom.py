r""":class:`CustomProb`: a distribution given by a user-written log-density."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._context import EvalContext
from ..errors import NotDefinedError, ShapeError
from .distributions import Distribution
from .protocol import SampleSpec, ScoreSpec, reduce_features

__all__ = ["CustomProb"]


class CustomProb(Distribution):
    r"""A distribution defined by its (possibly unnormalised) log-density :math:`\log p(x) = f(x)`.

    ``log_prob_function`` is called with the variables (and conditioning variables) as keywords and
    returns the log-density, elementwise or per data point. It cannot be sampled; it serves as a target
    density, e.g. :math:`\mathbb{E}_{q}[\log q(z) - \log p(z)]` for variational inference against an
    unnormalised :math:`p`.

    Args:
        log_prob_function: ``f(**variables) -> Tensor``.
        var: the variables.
        distribution_name: shown by ``print(p)``.
        learnable: when ``f`` is an :class:`torch.nn.Module`, register it so its parameters are part of
            this distribution (trained by a :class:`~pixyz_like.models.Model`, saved in the state dict);
            ``False`` keeps it out of both.
        cond_var, name: as for every distribution.
        features_shape: the shape of one data point; when given, an elementwise result is summed over
            these trailing dimensions, otherwise (Pixyz's rule) over every dimension but the first.

    >>> def banana(z):  # the banana-shaped density of Pixyz's example, unnormalised
    ...     z1, z2 = z[..., :1], z[..., 1:]
    ...     return -0.5 * z1**2 - 0.5 * (z2 - z1**2) ** 2
    >>> p = CustomProb(banana, var=["z"])
    >>> p.get_log_prob({"z": torch.tensor([[1.0, 1.0], [0.0, 1.0]])})
    tensor([-0.5000, -0.5000])
    >>> print(p.prob_text, p.distribution_name)
    p(z) Custom PDF
    """

    has_reparam = False

    def __init__(
        self,
        log_prob_function: Callable[..., torch.Tensor],
        var: Sequence[str] | str,
        distribution_name: str = "Custom PDF",
        learnable: bool = True,
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = (),
    ) -> None:
        if not callable(log_prob_function):
            raise TypeError(f"CustomProb(name={name!r}): log_prob_function must be callable, "
                            f"got {type(log_prob_function).__name__}")
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape)
        self._distribution_name = str(distribution_name)
        self.learnable = bool(learnable)
        if isinstance(log_prob_function, nn.Module) and not self.learnable:
            # Bypass nn.Module's registration: its parameters are then neither trained nor saved.
            object.__setattr__(self, "_log_prob_function", log_prob_function)
        else:
            self._log_prob_function = log_prob_function

    @property
    def log_prob_function(self) -> Callable[..., torch.Tensor]:
        """The user's log-density function."""
        return self._log_prob_function

    @property
    def distribution_name(self) -> str:  # type: ignore[override]  # a property for the base's class attribute
        return self._distribution_name

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        raise NotDefinedError(
            f"{self._owner()}: a CustomProb is defined by its log-density only and cannot be sampled"
        )

    def sample(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Not available: a CustomProb cannot be sampled (raises :class:`NotDefinedError`)."""
        return self._sample({}, ctx=EvalContext(), spec=SampleSpec())

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        lp = self._log_prob_function(**{v: x_dict[v] for v in self._var + self._cond_var})
        if not isinstance(lp, torch.Tensor):
            raise ShapeError(f"{self._owner()}: log_prob_function must return a tensor, got {type(lp).__name__}")
        n_feat = len(self._features_shape) if len(self._features_shape) else None
        if n_feat is not None and lp.ndim <= x_dict[self._var[0]].ndim - n_feat:
            return lp  # already one value per data point
        return reduce_features(lp, n_feat, spec)
