"""Named exceptions.

Every error pixyz_like raises on bad input derives from :class:`PixyzLikeError` and says which
distribution or loss was involved, which variable, and what was expected, so a user never has to
decode a raw torch error raised deep inside a network.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "PixyzLikeError",
    "MissingVariableError",
    "ParameterError",
    "SupportError",
    "ShapeError",
    "InputTypeError",
    "GraphError",
    "VariableMismatchError",
    "NotDefinedError",
    "OptionError",
    "CheckpointError",
    "NonFiniteLossError",
    "NonFiniteGradientError",
    "DatasetNotFoundError",
    "missing_variable_error",
]


class PixyzLikeError(Exception):
    """Base class of every error raised by pixyz_like on bad input.

    Catch it to handle any of them; each also derives from the matching built-in exception
    (``KeyError``, ``ValueError``, ``NotImplementedError``), so older ``except`` clauses still work.

    >>> issubclass(ShapeError, PixyzLikeError) and issubclass(ShapeError, ValueError)
    True
    """


class MissingVariableError(PixyzLikeError, KeyError, ValueError):
    """A variable a distribution or loss needs is absent from the input dict.

    It is a ``KeyError`` (a key is missing from a dict) and also a ``ValueError``, which is what
    Pixyz raised there, so ``except ValueError`` clauses written for Pixyz still catch it.

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> p.sample({"y": torch.zeros(1, 1)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.MissingVariableError: p(x|z) (Normal): sample needs variable ['z'], but the input ...
    """

    def __str__(self) -> str:  # KeyError would quote the message; show it plainly.
        return str(self.args[0]) if self.args else ""


class ParameterError(PixyzLikeError, ValueError):
    """A distribution's parameters are not the family's, or lie outside their domain.

    Raised when ``forward`` returns other keys than the family's, and (while validation is on, see
    :mod:`pixyz_like.distributions._validation`) when a parameter is not finite or outside its domain,
    e.g. a negative Normal ``scale``; the message names the distribution, the parameter, where it came
    from, the first offending entry and its index.

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> class Bad(Normal):
    ...     def forward(self, z):
    ...         return {"mean": z, "scale": torch.ones_like(z)}
    >>> Bad(var=["x"], cond_var=["z"]).sample({"z": torch.zeros(1, 1)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.ParameterError: p(x|z) (Bad): the parameters are ['mean', 'scale'], but a Normal ...
    """


class SupportError(PixyzLikeError, ValueError):
    """A value scored by a distribution lies outside the support of its family.

    Raised while validation is on (see :mod:`pixyz_like.distributions._validation`): a Bernoulli value
    outside :math:`[0, 1]`, a Categorical value that is not one-hot, a NaN Normal value... The message
    names the distribution, the variable, the first offending entry and its index.

    >>> import torch
    >>> from pixyz_like.distributions import Bernoulli
    >>> Bernoulli(probs=0.5, var=["x"]).get_log_prob({"x": torch.tensor([[0., 2.]])})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.SupportError: p(x) (Bernoulli): variable 'x' must be in [0, 1], but entry (0, 1) is 2.0 ...
    """


class ShapeError(PixyzLikeError, ValueError):
    """Tensors whose shapes do not fit the distribution, network or flow they are given to.

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(3), scale=1., var=["x"])
    >>> p.get_log_prob({"x": torch.zeros(2, 4)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.ShapeError: p(x) (Normal): variable 'x' has shape (2, 4), but the parameters have ...
    """


class InputTypeError(PixyzLikeError, TypeError):
    """A value of the wrong type given where a tensor (or a dict of tensors) is expected, e.g. a numpy
    array fed to a network, or a tensor given to ``loss.eval`` instead of a dict.

    >>> import numpy as np
    >>> from pixyz_like.distributions import Normal
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> q.sample({"x": np.zeros((2, 1))})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.InputTypeError: q(z|x) (Normal): variable 'x' ... is a ndarray; expected a torch.Tensor ...
    """


class GraphError(PixyzLikeError, ValueError):
    """A product of distributions that is not a valid directed acyclic graph.

    >>> from pixyz_like.distributions import Normal
    >>> a = Normal(loc="y", scale=1., var=["x"], cond_var=["y"])
    >>> b = Normal(loc="x", scale=1., var=["y"], cond_var=["x"])
    >>> a * b
    Traceback (most recent call last):
    ...
    pixyz_like.errors.GraphError: cannot multiply: the factors form a cycle (p(x|y) -> p(y|x) -> p(x|y))
    """


class VariableMismatchError(PixyzLikeError, ValueError):
    """Two distributions compared (e.g. by a KL divergence) are over different variables.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.losses import KullbackLeibler
    >>> pz = Normal(loc=0., scale=1., var=["z"])
    >>> pxy = Normal(loc=0., scale=1., var=["x"]) * Normal(loc=0., scale=1., var=["y"])
    >>> KullbackLeibler(pz, pxy)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.VariableMismatchError: KullbackLeibler: p(z) is over ['z'] but p(x,y) is over ['x', 'y']; ...
    """


class NotDefinedError(PixyzLikeError, NotImplementedError):
    """The quantity asked for is not defined for this distribution (e.g. log-density of a Deterministic).

    >>> import torch
    >>> from pixyz_like.distributions import Bernoulli
    >>> Bernoulli(probs=0.5, var=["x"]).sample(reparam=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.NotDefinedError: p(x) (Bernoulli): Bernoulli has no reparameterised sampler; ...
    """


class OptionError(PixyzLikeError, ValueError):
    """An option of a model or of training that has no meaning (e.g. a clipping threshold of 0 or less,
    ``max_steps=-1``); the message names the option, the value given and what is expected.

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> Model(-p.log_prob().mean(), distributions=[p], clip_grad_norm=-1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.OptionError: Model: clip_grad_norm must be a positive finite number ... got -1.0: ...
    """


class CheckpointError(PixyzLikeError, ValueError):
    """A checkpoint that cannot be read, is corrupted, or belongs to another model.

    The message names the file and what is wrong with it (unreadable bytes, a failed integrity check,
    a missing or mistyped entry, parameter names or shapes of another model).

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> Model(-p.log_prob().mean(), distributions=[p]).load_state_dict({"w": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixyz_like.errors.CheckpointError: Model.load_state_dict(): the state is not a pixyz_like or Pixyz ...
    """


class NonFiniteLossError(PixyzLikeError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and the term.

    ``Model.train`` and ``Model.fit`` raise it before the optimizer step, so the parameters, the
    optimizer's state and the last checkpoint are those of the last finite step.

    >>> issubclass(NonFiniteLossError, FloatingPointError)
    True
    """


class NonFiniteGradientError(NonFiniteLossError):
    """The loss is finite but a gradient is NaN or infinite (e.g. a saturated sigmoid in a density).

    Raised, like :class:`NonFiniteLossError`, before the optimizer step; the message names the
    parameters whose gradients are not finite.

    >>> issubclass(NonFiniteGradientError, NonFiniteLossError)
    True
    """


class DatasetNotFoundError(PixyzLikeError, FileNotFoundError):
    """Neither a local copy nor a download could provide a dataset (:func:`pixyz_like.datasets.load_mnist`).

    Also importable as ``pixyz_like.datasets.DatasetNotFoundError``; being a ``FileNotFoundError``, an
    ``except OSError`` clause catches it too.

    >>> issubclass(DatasetNotFoundError, PixyzLikeError) and issubclass(DatasetNotFoundError, FileNotFoundError)
    True
    """


def missing_variable_error(
    owner: str, action: str, missing: Iterable[str], given: Iterable[str]
) -> MissingVariableError:
    """The one message format for a variable absent from an input dict.

    >>> print(missing_variable_error("q(z|x) (Normal)", "sample", ["x"], {"y": 0}))
    q(z|x) (Normal): sample needs variable ['x'], but the input dict has ['y']
    """
    missing = list(missing)
    noun = "variable" if len(missing) == 1 else "variables"
    return MissingVariableError(
        f"{owner}: {action} needs {noun} {missing}, but the input dict has {sorted(given)}"
    )
