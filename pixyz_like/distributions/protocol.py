"""The protocol between formulas and distributions: how a loss asks a distribution to draw or to score.

The public methods (``sample``, ``get_log_prob``) check their arguments and make an evaluation context;
inside a formula, losses and composite distributions call the two protocol methods instead, with
keyword arguments only::

    dist._sample(x_dict, ctx=ctx, spec=SampleSpec(reparam=True))   # -> {variable: sample}
    dist._log_prob(x_dict, ctx=ctx, spec=SUMMED)                     # -> log-density per data point

``x_dict`` holds every variable the distribution needs (checked by the caller), ``ctx`` is the
:class:`~pixyz_like._context.EvalContext` of the evaluation (its memo makes ``q(z|x)`` read by two
terms run its network once), and the spec says how to draw or how to sum:

* :class:`SampleSpec` — ``batch_n`` (the batch size when there are no inputs to read it from),
  ``sample_shape`` (extra leading sample dimensions), ``reparam`` (a reparameterised draw that carries
  gradients), ``sample_mean`` (the mean instead of a draw);
* :class:`ScoreSpec` — ``sum_features`` and ``feature_dims``: which dimensions of the elementwise
  log-density are summed (by default every feature dimension, leaving ``sample_shape + (batch,)``).

The specs are immutable named tuples, cheap to make, so a formula can build them once. The shape
helpers every implementation shares (:func:`reduce_features`, :func:`broadcast_shapes`) live here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["SampleSpec", "ScoreSpec", "DRAW", "REPARAM", "SUMMED", "reduce_features", "broadcast_shapes"]


class SampleSpec(NamedTuple):
    """How to draw: batch size without inputs, sample dimensions, reparameterisation, or the mean.

    >>> spec = SampleSpec(sample_shape=torch.Size([5]), reparam=True)
    >>> spec.batch_n, tuple(spec.sample_shape), spec.reparam, spec.sample_mean
    (None, (5,), True, False)
    >>> spec.for_factor(batch_n=3).sample_shape
    torch.Size([])
    """

    batch_n: int | None = None
    sample_shape: torch.Size = torch.Size()
    reparam: bool = False
    sample_mean: bool = False

    def for_factor(self, batch_n: int | None) -> SampleSpec:
        """The spec a joint hands one factor: its batch size, no sample dims (they are folded into the batch)."""
        if batch_n == self.batch_n and not len(self.sample_shape):
            return self
        return SampleSpec(batch_n, torch.Size(), self.reparam, self.sample_mean)


class ScoreSpec(NamedTuple):
    """Which dimensions of the elementwise log-density are summed.

    ``sum_features=False`` keeps them all; ``feature_dims`` names the dimensions to sum; the default
    sums every feature dimension.

    >>> ScoreSpec().sum_features, ScoreSpec(feature_dims=(1,)).feature_dims
    (True, (1,))
    """

    sum_features: bool = True
    feature_dims: tuple[int, ...] | None = None

    @classmethod
    def of(cls, sum_features: bool = True, feature_dims: Sequence[int] | None = None) -> ScoreSpec:
        """The spec of the public ``get_log_prob(sum_features, feature_dims)`` arguments.

        >>> ScoreSpec.of(True, [2, 3]) == ScoreSpec(True, (2, 3)), ScoreSpec.of() is SUMMED
        (True, True)
        """
        if sum_features and feature_dims is None:
            return SUMMED
        return cls(bool(sum_features), None if feature_dims is None else tuple(feature_dims))


#: One ordinary draw (no gradients through the sampler).
DRAW = SampleSpec()
#: One reparameterised draw.
REPARAM = SampleSpec(reparam=True)
#: The log-density summed over every feature dimension.
SUMMED = ScoreSpec()


def reduce_features(lp: torch.Tensor, n_feat: int | None, spec: ScoreSpec) -> torch.Tensor:
    """Sum an elementwise log-density over its feature dimensions, as ``spec`` says.

    ``n_feat`` trailing dimensions are features; everything before them is sample and batch
    dimensions, which are kept. ``n_feat`` is ``None`` when the features are not known: scalar
    constant parameters (shape ``(1,)``) scoring a larger value. Then, as Pixyz does, every dimension
    but the first is summed, so ``Normal(loc=0., scale=1.)`` scores a ``(batch, d)`` value per row.

    >>> lp = torch.ones(4, 2, 3)
    >>> reduce_features(lp, 2, SUMMED).shape, reduce_features(lp, 2, ScoreSpec(False)).shape
    (torch.Size([4]), torch.Size([4, 2, 3]))
    >>> reduce_features(lp, None, SUMMED).shape, reduce_features(lp, 2, ScoreSpec(feature_dims=(2,))).shape
    (torch.Size([4]), torch.Size([4, 2]))
    """
    if not spec.sum_features:
        return lp
    dims = spec.feature_dims
    if dims is not None:
        return lp.sum(dim=dims) if len(dims) else lp
    if n_feat is None:
        return lp.sum(dim=tuple(range(1, lp.ndim))) if lp.ndim > 1 else lp
    if n_feat == 1:
        return lp.sum(-1)  # (the usual case; an int dim is parsed faster than a tuple)
    if n_feat > 0:
        return lp.sum(dim=tuple(range(-n_feat, 0)))
    return lp


def broadcast_shapes(shapes: Sequence[torch.Size]) -> torch.Size:
    """``torch.broadcast_shapes`` in plain Python (torch's goes through its reference implementation,
    about 30 us a call on CPU, paid by every factor at every sample and log-prob). Shapes that do not
    broadcast raise torch's ``RuntimeError``; callers turn it into a named error.

    >>> broadcast_shapes([torch.Size([4, 1]), torch.Size([3])])
    torch.Size([4, 3])
    """
    out = shapes[0]
    for s in shapes[1:]:
        if s != out:
            out = _broadcast_pair(out, s, shapes)
    return out


def _broadcast_pair(a: torch.Size, b: torch.Size, shapes: Sequence[torch.Size]) -> torch.Size:
    """Two shapes broadcast together (right-aligned); torch's own error for ``shapes`` if they do not."""
    if len(a) < len(b):
        a, b = b, a
    lead = len(a) - len(b)
    dims = list(a[:lead])
    for x, y in zip(a[lead:], b):
        if x == y or y == 1:
            dims.append(x)
        elif x == 1:
            dims.append(y)
        else:
            torch.broadcast_shapes(*shapes)  # (raises torch's error for the shapes given)
            raise AssertionError("unreachable: torch broadcast shapes that do not broadcast")
    return torch.Size(dims)
