"""Showing a distribution, loss or model as rendered LaTeX in a notebook (IPython's ``Math``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.display import Math

__all__ = ["print_latex"]


def print_latex(obj: Any) -> Math:
    """Render a distribution, loss or model as LaTeX in a notebook (returns ``IPython.display.Math``).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> print_latex(p).data
    'p(x|z)'
    >>> print(print_latex(p.log_prob()).data)
    \\log p(x|z)
    """
    from IPython.display import Math

    if hasattr(obj, "prob_joint_factorized_and_text"):
        text = obj.prob_joint_factorized_and_text
    elif hasattr(obj, "loss_text"):
        text = obj.loss_text
    elif hasattr(obj, "loss_cls"):
        text = obj.loss_cls.loss_text
    else:
        raise TypeError(f"print_latex expects a Distribution, Loss or Model, got {type(obj).__name__}")
    return Math(text)
