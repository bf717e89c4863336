r"""The :class:`Distribution` base class and :class:`DistributionBase`, the base of parametric families.

A distribution is an :class:`torch.nn.Module` over named random variables ``var`` given named
conditioning variables ``cond_var``. Values move as ``dict[str, Tensor]``. A sample has shape
``sample_shape + (batch_n,) + features_shape``; ``get_log_prob`` sums the feature dimensions so it
returns one value per data point (and per sample, when the value carries sample dimensions).

A parametric family's parameters come from three places, freely mixed:

* numbers or tensors given to the constructor, stored as buffers of shape ``(1, *features_shape)``;
* the name of a conditioning variable (``Normal(var=["x"], cond_var=["y"], loc="y", scale=1.)``);
* a subclass ``forward(**cond_vars) -> dict`` that computes them with a network.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from .._context import EvalContext
from .._latex import convert_latex_name
from .._options import check_options
from ..errors import (
    GraphError,
    InputTypeError,
    NotDefinedError,
    OptionError,
    ParameterError,
    ShapeError,
    missing_variable_error,
)
from ..utils import tolist
from . import _validation
from .protocol import SampleSpec, ScoreSpec, broadcast_shapes, reduce_features

if TYPE_CHECKING:  # types only: losses.pdf imports this module, and the graph is built on first use
    from ..losses.pdf import LogProb, Prob
    from .graph import DistributionGraph

__all__ = ["Distribution", "DistributionBase"]

_SAMPLE_OPTIONS = ("batch_n", "sample_shape", "return_all", "reparam", "sample_mean")


def _check_inputs(owner: Callable[[], str], inputs: Mapping[str, Any], batch_first: bool,
                  action: str = "forward()") -> None:
    """Check the conditioning variables before a user network (or the parameters) sees them.

    A numpy array or a Python list is refused (a network would fail inside torch), and, with
    ``batch_first`` (inputs of a network), a 0-dim tensor: inputs are ``(batch, *features)``. Other
    objects pass untouched (a ``forward`` may take, say, a hidden state or an option).
    """
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            if batch_first and value.ndim == 0:
                raise ShapeError(
                    f"{owner()}: variable {name!r} given to {action} is a 0-dim tensor; inputs are batch-first, "
                    "expected shape (batch, *features) (e.g. x.reshape(1, 1) for one scalar)"
                )
        elif isinstance(value, (list, tuple)) or type(value).__module__ == "numpy":
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
                continue
            raise InputTypeError(
                f"{owner()}: variable {name!r} given to {action} is a {type(value).__name__}; expected a "
                "torch.Tensor of shape (batch, *features) (convert it with torch.as_tensor)"
            )


def _add_note(e: BaseException, text: str) -> None:
    """Say where a user network failed, without changing the error torch raised."""
    e.add_note(text)


def _check_names(owner: str, kind: str, names: Sequence[Any]) -> list[str]:
    names = tolist(names)
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"{owner}: every name in {kind} must be a non-empty string, got {n!r}")
    if len(set(names)) != len(names):
        raise GraphError(f"{owner}: {kind} {names} names a variable twice")
    return names


def _shapes(tensors: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}: {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{k}: {type(v).__name__}"
        for k, v in tensors.items()
    )


def call_user_function(owner: str | Callable[[], str], fn: Any, what: str, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Call a user's ``forward`` (or similar) with the conditioning variables as keywords.

    If it raises a ``TypeError`` and its signature does not accept those keywords (checked by binding
    them, only on failure, never by reading the message), that is our named ``TypeError``; any other
    error is the network's own, passed on with a note naming the distribution and the inputs.
    ``owner`` may be a function giving the distribution's text: it is called only on failure.
    """
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        _user_function_failed(owner, fn, what, args, kwargs, e)
        raise


def _user_function_failed(owner: str | Callable[[], str], fn: Any, what: str, args: tuple, kwargs: dict[str, Any],
                          e: Exception) -> None:
    """After a user's function raised ``e``: raise our named ``TypeError`` if its signature refuses the
    keywords, else note on ``e`` where it was raised (the caller re-raises it)."""
    owner = owner() if callable(owner) else owner
    if isinstance(e, TypeError):
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError:
            raise TypeError(
                f"{owner}: {what}() is called with {sorted(kwargs)} as keywords; its signature does not "
                f"accept them: {e}"
            ) from e
        except ValueError:  # no signature to inspect
            pass
    _add_note(e, f"raised in {owner}.{what}() on inputs ({_shapes(kwargs)})")


class Distribution(nn.Module):
    r"""A (conditional) probability distribution over named variables.

    Args:
        var: the variables this distribution is over (a string is read as a one-element list).
        cond_var: the variables it is conditioned on.
        name: its name; printed through sympy's LaTeX (``"p_prior"`` prints as ``p_{prior}``).
        features_shape: the shape of one data point of ``var`` (known for constant parameters).
        atomic: accepted for Pixyz's signature and unused (a composite is known by its ``factors()``).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(var="x", cond_var="y", loc="y", scale=1.0, name="p")
    >>> p.prob_text
    'p(x|y)'
    >>> p.sample({"y": torch.zeros(3, 2)})["x"].shape
    torch.Size([3, 2])
    """

    distribution_name = ""
    has_reparam = False

    def __init__(
        self,
        var: Sequence[str] | str,
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        atomic: bool = True,
    ) -> None:
        super().__init__()
        owner = f"{type(self).__name__}(name={name!r})"
        var = _check_names(owner, "var", var)
        cond_var = _check_names(owner, "cond_var", cond_var)
        if not var:
            raise GraphError(f"{owner}: var must name at least one variable")
        both = sorted(set(var) & set(cond_var))
        if both:
            raise GraphError(f"{owner}: {both} cannot be both a variable and a conditioning variable")
        if not isinstance(name, str):
            raise TypeError(f"{owner}: name must be a string, got {type(name).__name__}")
        self._var = var
        self._cond_var = cond_var
        self._name = name
        # LaTeX of the names, converted once here (sympy is slow) rather than on every print or every
        # logged term; the name setter keeps _name_latex in step, and variable names never change.
        self._name_latex = convert_latex_name(name)
        self._var_latex = {v: convert_latex_name(v) for v in var + cond_var}
        self._features_shape = torch.Size(features_shape)

    # ------------------------------------------------------------------ properties
    @property
    def var(self) -> list[str]:
        """The variables this distribution is over."""
        return list(self._var)

    @property
    def cond_var(self) -> list[str]:
        """The conditioning variables."""
        return list(self._cond_var)

    @property
    def input_var(self) -> list[str]:
        """The variables ``sample`` needs in its input dict (the conditioning variables)."""
        return list(self._cond_var)

    @property
    def name(self) -> str:
        """The distribution's name (as given; printed through :func:`convert_latex_name`)."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{self._owner()}: name must be a string, got {type(name).__name__}")
        self._name = name
        self._name_latex = convert_latex_name(name)

    @property
    def features_shape(self) -> torch.Size:
        """The shape of one data point of the variable (empty when it is set by a network)."""
        return self._features_shape

    # ------------------------------------------------------------------ text
    @property
    def prob_text(self) -> str:
        """The formula of this distribution, e.g. ``p(x|z)``."""
        var_text = ",".join(self._latex_name_of(v) for v in self._var)
        cond = self._cond_var
        cond_text = "|" + ",".join(self._latex_name_of(v) for v in cond) if cond else ""
        return f"{self._name_latex}({var_text}{cond_text})"

    def _latex_name_of(self, v: str) -> str:
        latex = self._var_latex.get(v)
        return latex if latex is not None else convert_latex_name(v)

    @property
    def prob_factorized_text(self) -> str:
        """The formula as a product of its factors, e.g. ``p(x|z)p_{prior}(z)``."""
        return self.prob_text

    @property
    def prob_joint_factorized_and_text(self) -> str:
        """``joint = factorisation``, or the formula alone when the two are the same."""
        joint, factorized = self.prob_text, self.prob_factorized_text
        return joint if joint == factorized else f"{joint} = {factorized}"

    def _owner(self) -> str:
        """How errors name this distribution: its formula and class."""
        try:
            return f"{self.prob_text} ({type(self).__name__})"
        except Exception:  # a half-built object: never let error reporting fail
            return type(self).__name__

    def extra_repr(self) -> str:
        return (
            f"name={convert_latex_name(self._name)}, distribution_name={self.distribution_name},\n"
            f"var={self.var}, cond_var={self.cond_var}, input_var={self.input_var}, "
            f"features_shape={self.features_shape}"
        )

    def _network_text(self) -> str:
        return "\n".join(
            f"{f.prob_text}:\n{nn.Module.__repr__(f)}" if len(self.factors()) > 1 else nn.Module.__repr__(f)
            for f in self.factors()
        )

    def __str__(self) -> str:
        network = "\n".join("  " + line for line in self._network_text().splitlines())
        return f"Distribution:\n  {self.prob_joint_factorized_and_text}\nNetwork architecture:\n{network}"

    def _repr_latex_(self) -> str:
        return f"${self.prob_joint_factorized_and_text}$"

    def factors(self) -> list[Distribution]:
        """The atomic factors of this distribution in sampling (topological) order."""
        return [self]

    @property
    def graph(self) -> DistributionGraph:
        """The directed graph of the factors; ``p.graph.to_dot()`` gives Graphviz DOT text."""
        from .graph import DistributionGraph

        return DistributionGraph(self.factors(), self.var, self.cond_var, owner=self)

    # ------------------------------------------------------------------ input handling
    def _as_dict(self, x_dict: Any, action: str) -> dict[str, Any]:
        """Accept a dict, or (Pixyz style) a tensor or list of tensors for the input variables."""
        if x_dict is None:
            return {}
        if isinstance(x_dict, Mapping):
            return dict(x_dict)
        inputs = self.input_var
        if isinstance(x_dict, torch.Tensor):
            x_dict = [x_dict]
        if isinstance(x_dict, (list, tuple)):
            if len(x_dict) != len(inputs):
                raise TypeError(
                    f"{self._owner()}: {action} got {len(x_dict)} tensor(s) for input variables {inputs}; "
                    "pass a dict {name: tensor}"
                )
            return dict(zip(inputs, x_dict))
        raise TypeError(f"{self._owner()}: {action} expects a dict of tensors, got {type(x_dict).__name__}")

    def _require(self, x_dict: Mapping[str, Any], names: Iterable[str], action: str) -> None:
        missing = [n for n in names if n not in x_dict]
        if missing:
            raise missing_variable_error(self._owner(), action, missing, x_dict.keys())

    # ------------------------------------------------------------------ public API
    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        **options: Any,
    ) -> dict[str, torch.Tensor]:
        """Draw the variables given the conditioning ones.

        Returns a dict holding the samples (and, with ``return_all``, the inputs too). Each sample
        has shape ``sample_shape + (batch_n,) + features_shape``; ``batch_n`` is taken from the inputs
        when there are any, otherwise from the argument (default 1). ``reparam`` asks for a
        reparameterised sample that carries gradients; ``sample_mean`` returns the mean instead.
        """
        x_dict = self._sample_inputs(x_dict, options, reparam, sample_mean)
        spec = SampleSpec(batch_n, self._sample_shape(sample_shape), reparam, sample_mean)
        return self._sample_result(x_dict, self._sample(x_dict, ctx=EvalContext(memo=False), spec=spec), return_all)

    def _sample_inputs(
        self, x_dict: Any, options: Mapping[str, Any], reparam: bool, sample_mean: bool, extra: Sequence[str] = ()
    ) -> dict[str, Any]:
        """What every public ``sample()`` checks first, the input dict back: the options (Pixyz's and the
        class's ``extra`` ones), the inputs given, and a reparameterised family when a draw asks ``reparam``."""
        check_options(lambda: f"{self._owner()}.sample()", options, _SAMPLE_OPTIONS + tuple(extra))
        x_dict = self._as_dict(x_dict, "sample")
        self._require(x_dict, self.input_var, "sample")
        if reparam and not sample_mean:
            self._check_reparam()
        return x_dict

    @staticmethod
    def _sample_result(
        x_dict: dict[str, Any], out: dict[str, torch.Tensor], return_all: bool
    ) -> dict[str, torch.Tensor]:
        """What every public ``sample()`` returns: the samples, or with ``return_all`` the input dict updated
        with them (Pixyz's)."""
        if return_all:
            x_dict.update(out)
            return x_dict
        return out

    def _sample_shape(self, sample_shape: Any) -> torch.Size:
        """``sample_shape`` as a ``torch.Size`` of positive sizes (a 0 would give an empty sample)."""
        try:
            size = torch.Size(sample_shape)
        except (TypeError, ValueError) as e:
            raise OptionError(
                f"{self._owner()}.sample(): sample_shape must be a sequence of positive ints, got {sample_shape!r}"
            ) from e
        if any(d <= 0 for d in size):
            raise OptionError(
                f"{self._owner()}.sample(): sample_shape {tuple(size)} has a size <= 0; each size must be "
                "positive (a 0 gives an empty sample whose mean is NaN)"
            )
        return size

    def get_log_prob(
        self,
        x_dict: Mapping[str, Any] | None = None,
        sum_features: bool = True,
        feature_dims: Sequence[int] | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Log-density of ``var`` given ``cond_var``, summed over the feature dimensions."""
        check_options(lambda: f"{self._owner()}.get_log_prob()", options, ("sum_features", "feature_dims"))
        x_dict = self._as_dict(x_dict, "get_log_prob")
        self._require(x_dict, self.scoring_var, "get_log_prob")
        return self._log_prob(x_dict, ctx=EvalContext(memo=False), spec=ScoreSpec.of(sum_features, feature_dims))

    @property
    def scoring_var(self) -> list[str]:
        """The variables ``get_log_prob`` needs: ``var`` and the inputs."""
        return list(dict.fromkeys(self.var + self.input_var))

    def get_prob(self, x_dict: Mapping[str, Any] | None = None, sum_features: bool = True,
                 feature_dims: Sequence[int] | None = None) -> torch.Tensor:
        """Density (``exp`` of :meth:`get_log_prob`)."""
        return self.get_log_prob(x_dict, sum_features, feature_dims).exp()

    def get_entropy(
        self,
        x_dict: Mapping[str, Any] | None = None,
        sum_features: bool = True,
        feature_dims: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Entropy, in closed form, summed over the feature dimensions."""
        raise NotDefinedError(f"{self._owner()}: the entropy has no closed form here")

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """The mean of the (single) variable given the conditioning variables."""
        raise NotDefinedError(f"{self._owner()}: the mean has no closed form here")

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """The variance of the (single) variable given the conditioning variables."""
        raise NotDefinedError(f"{self._owner()}: the variance has no closed form here")

    def get_params(self, params_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The family's parameters given the conditioning variables."""
        raise NotDefinedError(f"{self._owner()}: it has no parameters of a single family")

    def simulate(self, inputs: Mapping[str, Any] | None = None, batch_n: int | None = None) -> Any:
        """Gen's ``simulate``: draw every variable; the trace (values, each factor's log-density, score).

        See :func:`pixyz_like.distributions.traces.simulate`.

        >>> from pixyz_like.distributions import Normal
        >>> joint = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * Normal(loc=0., scale=1., var=["z"])
        >>> sorted(joint.simulate(batch_n=2).values)
        ['x', 'z']
        """
        from .traces import simulate

        return simulate(self, inputs, batch_n=batch_n)

    def generate(self, inputs: Mapping[str, Any] | None = None, observations: Mapping[str, Any] | None = None,
                 batch_n: int | None = None) -> Any:
        """Gen's ``generate``: run with ``observations`` fixed; ``(trace, log_weight)``.

        See :func:`pixyz_like.distributions.traces.generate`.

        >>> from pixyz_like.distributions import Normal
        >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[1])
        >>> joint = Normal(loc="z", scale=1., var=["x"], cond_var=["z"]) * prior
        >>> trace, log_w = joint.generate(observations={"x": torch.zeros(3, 1)})
        >>> log_w.shape
        torch.Size([3])
        """
        from .traces import generate

        return generate(self, inputs, observations, batch_n=batch_n)

    def log_prob(self, sum_features: bool = True, feature_dims: Sequence[int] | None = None) -> LogProb:
        """The loss ``log p(x|z)`` (a :class:`~pixyz_like.losses.LogProb`)."""
        from ..losses.pdf import LogProb

        return LogProb(self, sum_features=sum_features, feature_dims=feature_dims)

    def prob(self, sum_features: bool = True, feature_dims: Sequence[int] | None = None) -> Prob:
        """The loss ``p(x|z)`` (a :class:`~pixyz_like.losses.Prob`)."""
        from ..losses.pdf import Prob

        return Prob(self, sum_features=sum_features, feature_dims=feature_dims)

    def replace_var(self, **replace_dict: str) -> Distribution:
        """The same distribution with variables renamed: ``p.replace_var(z="y")`` gives ``p(x|y)``."""
        from .joint import MultiplyDistribution, ReplaceVarDistribution

        if len(self.factors()) > 1:
            return MultiplyDistribution.from_factors(
                [ReplaceVarDistribution(f, replace_dict, _check=False) for f in self.factors()],
                name=self._name,
                var_order=[replace_dict.get(v, v) for v in self.var],
                _validate_replace=(self, replace_dict),
            )
        return ReplaceVarDistribution(self, replace_dict)

    def marginalize_var(self, marginalize_list: Sequence[str] | str) -> Distribution:
        """The marginal over the remaining variables: ``p(x,z).marginalize_var("z")`` is ``p(x)``."""
        from .joint import MarginalizeVarDistribution

        return MarginalizeVarDistribution(self, marginalize_list)

    def __mul__(self, other: Distribution) -> Distribution:
        from .joint import MultiplyDistribution

        if not isinstance(other, Distribution):
            return NotImplemented
        return MultiplyDistribution(self, other)

    # ------------------------------------------------------------------ internal protocol
    def _check_reparam(self) -> None:
        if not self.has_reparam:
            raise NotDefinedError(
                f"{self._owner()}: {self.distribution_name or type(self).__name__} has no reparameterised "
                "sampler; call sample(reparam=False), or use a relaxed family"
            )

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        """Draw the variables as ``spec`` says; returns only the new ones. Inputs are known to be present
        (see :mod:`pixyz_like.distributions.protocol`)."""
        raise NotImplementedError

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        """The log-density of ``var`` given the inputs, summed as ``spec`` says."""
        raise NotDefinedError(f"{self._owner()}: its log-density is not defined")


def _promote(params: dict[str, Any], value: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """The parameters and the value in one floating dtype, promoted as torch's arithmetic promotes.

    A bool or integer value takes the parameters' dtype; a float64 value with float32 parameters makes
    everything float64; bfloat16 parameters (a decoder under autocast) with a float32 value are
    computed in float32. Nothing is copied when the dtypes already agree (the usual case).
    """
    # (a parameter kept as a Python number, see DistributionBase._number_params, takes any dtype)
    dtype = value.dtype
    for t in params.values():
        if type(t) is not float and t.dtype is not dtype:
            break
    else:
        return params, value  # (the usual case: one dtype already)
    tensors = [t for t in params.values() if type(t) is not float]
    if not tensors:  # no tensor parameters: nothing to promote the value to
        return params, value
    dtype, mixed = tensors[0].dtype, False
    for t in tensors:
        if t.dtype is not dtype:
            dtype, mixed = torch.promote_types(dtype, t.dtype), True
    if value.dtype is not dtype and value.is_floating_point():
        dtype, mixed = torch.promote_types(dtype, value.dtype), True
    if mixed:
        params = {k: t if type(t) is float else t.to(dtype) for k, t in params.items()}
    if value.dtype is not dtype:
        value = value.to(dtype)
    return params, value


class _ParamEntry:
    """A family's parameters for one set of inputs, as memoised in an evaluation: the parameters, their
    checked broadcast shape, the keys ``forward`` gave (for messages), whether their domains were
    checked and whether every tensor among them has that shape (``own``: a draw of it need not
    broadcast, see ``DistributionBase._draw_own``).

    ``raw`` is what the family's own maths read: a parameter in the family's ``_number_params`` that
    ``forward`` gave as a number (``scale=1.0``) stays a Python float there; ``params``, what every
    other reader gets, holds it as a 0-dim tensor of the other parameters' dtype and device (made on
    first read, once per evaluation)."""

    __slots__ = ("raw", "shape", "from_forward", "validated", "numbers", "own", "_params")

    def __init__(self, raw: dict[str, Any], shape: torch.Size, from_forward: tuple[str, ...],
                 validated: bool, numbers: tuple[str, ...] = (), own: bool = False) -> None:
        self.raw, self.shape, self.from_forward, self.validated = raw, shape, from_forward, validated
        # (own: every tensor parameter has exactly ``shape``, as the one-pass path found them)
        self.numbers, self.own = numbers, own
        self._params: dict[str, torch.Tensor] | None = None

    @property
    def params(self) -> dict[str, torch.Tensor]:
        if not self.numbers:
            return self.raw
        params = self._params
        if params is None:
            params = self._params = _numbers_as_tensors(self.raw, self.numbers)
        return params


def _numbers_as_tensors(raw: dict[str, Any], numbers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``raw`` with the numbers under ``numbers`` as 0-dim tensors of its first floating tensor's dtype
    and device (kept numbers always have one: see ``DistributionBase._as_tensors``)."""
    ref = next(v for v in raw.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    out = dict(raw)
    for key in numbers:
        out[key] = torch.scalar_tensor(raw[key], dtype=ref.dtype, device=ref.device)
    return out


_NEVER = (math.inf, -math.inf)  # (no number lies in this interval)


class _Plan:
    """What a family's parameter pipeline knows from the distribution's construction, gathered in one
    plain object that a call reads once: where the parameters come from (``forward``, conditioning
    variables, constants), the parameter sets taken, the numbers that may stay Python floats (with
    their domain as an open interval), the feature and event dimensions, and the class's declarations.

    (An ``nn.Module``'s attribute reads pass through its ``__getattr__`` hook, which Python 3.11 does
    not specialise: about 390 instructions a read against 90 on a plain object, and 1,000 a method
    call against 400; a factor's draw made some 25 of them.) It is rebuilt whenever one of the
    attributes it is made from is assigned (``DistributionBase.__setattr__``) and is not saved with
    the distribution (``__getstate__``), so it can neither go stale nor be pickled; the class
    declarations it reads (``param_support``, ``_draw_shows_invalid``, ...) are read when the
    distribution is made, as ``__init_subclass__`` settles them when the class is."""

    __slots__ = ("overridden", "cond", "var", "custom", "param_vars", "const_keys", "keys_expected", "keys_also",
                 "numbers", "n_features", "event_ndim", "check_features", "batch_at", "draw_shows",
                 "checked_before_draw", "score_flags", "reparam", "draw_own")

    def __init__(self, d: DistributionBase) -> None:
        cls = type(d)
        self.overridden, self.cond, self.var = cls._params_overridden, d._cond_var, d._var[0]
        self.custom, self.param_vars, self.const_keys = d._custom_forward, d._param_vars, d._const_keys
        self.keys_expected, self.keys_also = d._keys_expected, d._keys_also
        # The numbers that may stay floats, each with its domain as an open interval (lo, hi), tested by
        # one comparison chain (a NaN fails it): the finite numbers when the domain is not checked, the
        # domain itself when it is one open bound on the entries (a scale's (0, inf)); a number for
        # another domain becomes a tensor, as any other parameter.
        support = cls.param_support
        numbers = {}
        for key in cls._number_params:
            c = support.get(key)
            if c is None:
                numbers[key] = (-math.inf, math.inf)
            elif c.single is not None and c.single.strict == (True, True):
                numbers[key] = (c.single.lo, cast(float, c.single.hi))  # (a constant bound: see Constraint.single)
        self.numbers: dict[str, tuple[float, float]] = numbers
        n_f = self.n_features = len(d._features_shape)
        self.check_features = n_f > 0 or len(d._event_shape) > 0
        # (parameters of more dimensions than this have a batch dimension, whose size is checked)
        self.event_ndim = cls.event_ndim
        self.batch_at = (n_f if n_f else 1) + cls.event_ndim
        self.draw_shows, self.draw_own = cls._draw_shows_invalid, cls._draw_own_usable
        self.checked_before_draw, self.score_flags = d._checked_before_draw, cls._score_flags_invalid
        reparam = cls.has_reparam  # (a property on some class: read on each call)
        self.reparam: bool | None = reparam if type(reparam) is bool else None


#: The attributes a :class:`_Plan` is made from: assigning one rebuilds it.
_PLAN_INPUTS = frozenset({"_cond_var", "_var", "_custom_forward", "_param_vars", "_const_keys", "_keys_expected",
                          "_keys_also", "_features_shape", "_event_shape", "_checked_before_draw"})


def _param_entry(d: DistributionBase, plan: _Plan, x_dict: Mapping[str, Any], ctx: EvalContext | None,
                 validate: bool) -> _ParamEntry:
    """The parameters of ``d`` (whose plan is ``plan``) with their checked shape, memoised in ``ctx``;
    their domains are checked when ``validate`` (at once, or when a later reader of the memo asks). A
    class with its own ``_get_params`` checks (and memoises) what it computes itself."""
    if plan.overridden:
        params = d._get_params(x_dict, ctx)
        return _ParamEntry(params, d._checked_shape(params), (), True)
    cond = plan.cond
    if len(cond) == 1:
        x = x_dict[cond[0]]
        inputs: tuple[Any, ...] = (x,)
        unusual = type(x) is not torch.Tensor or not x.ndim  # (a tensor of one dimension or more needs no closer look)
    elif cond:
        inputs = tuple([x_dict[v] for v in cond])
        unusual = any(type(t) is not torch.Tensor or not t.ndim for t in inputs)
    else:
        inputs, unusual = (), False
    memo = ctx.memo if ctx is not None else None
    if memo is not None:
        hit, key = memo.find(d, inputs)
        if hit is not None:
            if validate and not hit.validated:
                d._validate_params(hit.raw, hit.from_forward)
                hit.validated = True
            return hit
    custom = plan.custom
    if inputs:
        named = {cond[0]: x} if len(inputs) == 1 else dict(zip(cond, inputs))  # (a literal: 4x faster)
        if unusual:
            _check_inputs(d._owner, named, custom, "forward()" if custom else "its parameters")
    if custom:
        params = _call_forward(d, named if inputs else {})
        from_forward = tuple(params)
    else:
        params, from_forward = {}, ()
    if plan.param_vars or plan.const_keys:
        d._fill_params(params, x_dict)
    keys_usual = params.keys() == plan.keys_expected or (plan.keys_also and frozenset(params) in plan.keys_also)
    usual = _usual_params(d, plan, params, inputs, from_forward) if keys_usual else None
    if usual is not None:
        shape, numbers = usual
    else:
        if not keys_usual:
            raise ParameterError(
                f"{d._owner()}: the parameters are {sorted(params)}, but a {d.distribution_name} expects "
                f"{d._expected_keys_text()} (from forward(), constants or conditioning variables)"
            )
        numbers = d._as_tensors(params, inputs, from_forward)
        shape = d._check_param_shapes(params, inputs, from_forward)
    if validate:
        d._validate_params(params, from_forward)
    out = _ParamEntry(params, shape, from_forward, validate, numbers, usual is not None)
    if memo is not None:
        memo.store(key, inputs, out)
    return out


def _call_forward(d: DistributionBase, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``d.forward(**kwargs)``, its failure explained and its result checked to be a dict (copied)."""
    try:  # (call_user_function, written out: this is every factor's hot path)
        out = d.forward(**kwargs)
    except Exception as e:
        _user_function_failed(d._owner, d.forward, "forward", (), kwargs, e)
        raise
    if type(out) is not dict and not isinstance(out, Mapping):
        raise ParameterError(
            f"{d._owner()}: forward() must return a dict of parameters {d._expected_keys_text()}, "
            f"got {type(out).__name__}"
        )
    return dict(out)


def _usual_params(d: DistributionBase, plan: _Plan, params: dict[str, Any], inputs: tuple[Any, ...],
                  from_forward: tuple[str, ...]) -> tuple[torch.Size, tuple[str, ...]] | None:
    """The usual parameters decided in one pass, ``(shape, kept numbers)``: floating tensors of one
    shape and numbers kept as floats (what ``_as_tensors`` then ``_check_param_shapes`` give them);
    ``None`` for anything else, left to those two (tests/test_fast_paths.py checks they agree)."""
    numbers, shape = plan.numbers, None
    kept: tuple[str, ...] = ()
    for key, value in params.items():
        kind = type(value)
        if kind is torch.Tensor and value.is_floating_point():
            if shape is None:
                shape = value.shape
            elif value.shape != shape:
                return None
        elif kind is float:
            lo, hi = numbers.get(key, _NEVER)  # (_kept_number, written out: the hot path)
            if not lo < value < hi:
                return None
            kept += (key,)
        else:
            return None
    if shape is None:
        return None
    return _check_shape(d, plan, shape, params, inputs, from_forward), kept


def _features_count(plan: _Plan, shape: torch.Size) -> int | None:
    """``DistributionBase._n_feat_of``: the feature dimensions of parameters of broadcast ``shape``."""
    if plan.n_features:
        return plan.n_features
    n = len(shape) - 1 - plan.event_ndim
    if n <= 0 and shape.numel() == 1:
        return None  # scalar constants: the features are whatever the value has (Pixyz's rule)
    return n


def _kept_number(plan: _Plan, key: str, value: float) -> bool:
    """Whether the number ``value`` for parameter ``key`` stays a Python float: the family's maths take
    it so (``_number_params``) and it lies in the parameter's domain, decided by one comparison (one
    outside its domain becomes a tensor as before, and is checked, or taken by torch's NaN path while
    validation is off, as any other)."""
    lo, hi = plan.numbers.get(key, _NEVER)
    return lo < value < hi


def _check_shape(d: DistributionBase, plan: _Plan, shape: torch.Size, params: dict[str, Any],
                 inputs: tuple[Any, ...], from_forward: tuple[str, ...]) -> torch.Size:
    """The parameters' broadcast ``shape`` must fit ``features_shape``, and, from ``forward``, keep the
    inputs' batch size (or 1)."""
    if plan.check_features:
        d._check_features(shape)
    if not from_forward or len(shape) <= plan.batch_at:
        return shape  # no batch dimension to compare
    first = shape[0]
    if first == 1 or (len(inputs) == 1 and type(inputs[0]) is torch.Tensor and inputs[0].shape[0] == first):
        return shape  # (the usual case: one input of this batch size)
    leads = {t.shape[0] for t in inputs if isinstance(t, torch.Tensor) and t.ndim}
    if leads and shape[0] not in leads:
        got = ", ".join(f"{k!r}: {tuple(params[k].shape)}" for k in from_forward if type(params[k]) is not float)
        raise ShapeError(
            f"{d._owner()}: forward() returned parameters of batch size {shape[0]} ({got}) for inputs of "
            f"batch size {sorted(leads)} ({_shapes(dict(zip(plan.cond, inputs)))}); expected each "
            "parameter's first dimension to be the inputs' batch size (or 1)"
        )
    return shape


class DistributionBase(Distribution):
    r"""Base of parametric families (Normal, Bernoulli, ...).

    A family declares ``params_keys`` and implements the elementwise maths in ``_log_prob_value``,
    ``_draw`` and, where they exist, ``_entropy``, ``_mean``, ``_variance``; ``_torch_dist`` builds the
    equivalent :mod:`torch.distributions` object (the fallback for anything not written out).
    ``event_ndim`` is the number of trailing parameter dimensions that form one event (1 for
    Categorical, whose last dimension enumerates the categories); as in Pixyz, ``features_shape``
    includes them (``Categorical(probs=torch.ones(3) / 3).features_shape == (3,)``).

    ``param_support`` maps each parameter to its domain and ``_value_support()`` gives the support of
    the variable (:class:`~pixyz_like.distributions._validation.Constraint` objects); while validation
    is on, parameters are checked each time they are computed and values each time they are scored.
    A ``forward`` may return plain numbers for some parameters (``{"loc": z, "scale": 1.0}``): they
    become 0-dim tensors of the other parameters' dtype and device and broadcast, as in Pixyz. Before
    scoring, the parameters and the value are promoted to one floating dtype, as torch's arithmetic
    does (a bool or float64 value with float32 parameters, bfloat16 parameters under autocast).

    A network-parameterised family is a subclass whose ``forward`` takes the conditioning variables
    by name and returns the parameters:

    >>> from torch import nn
    >>> from pixyz_like.distributions import Normal
    >>> class Encoder(Normal):
    ...     def __init__(self):
    ...         super().__init__(var=["z"], cond_var=["x"], name="q")
    ...         self.fc = nn.Linear(3, 4)
    ...     def forward(self, x):
    ...         h = self.fc(x)
    ...         return {"loc": h[:, :2], "scale": nn.functional.softplus(h[:, 2:])}
    >>> q = Encoder()
    >>> q.sample({"x": torch.zeros(5, 3)})["z"].shape
    torch.Size([5, 2])
    >>> sorted(q.get_params({"x": torch.zeros(5, 3)}))
    ['loc', 'scale']
    """

    params_keys: tuple[str, ...] = ()
    #: The sets of parameters the family takes when it has a choice (Bernoulli: ``probs`` or ``logits``),
    #: each as ``forward``, the constants and the conditioning variables give them all; empty: exactly
    #: ``params_keys``.
    params_key_sets: tuple[tuple[str, ...], ...] = ()
    #: Whether the class computes its parameters with its own ``_get_params`` (a product of experts, a
    #: mixture posterior): set for each class when it is defined, read by ``_params_and_shape``.
    _params_overridden = False
    #: Whether the log-density is NaN or infinite whenever a parameter is outside its domain or the
    #: value outside its support (Normal: a negative scale gives log(scale) = NaN, a NaN or infinite
    #: loc or value an infinite or NaN z). Then, while validation is on, scoring checks one tensor, the
    #: log-density, and looks at the parameters and the value only when it is not finite (to name the
    #: culprit); a finite log-density proves them valid. Declared by the class whose maths it
    #: describes; a subclass changing the maths or the domains loses it unless it declares it again.
    _score_flags_invalid = False
    #: The parameters whose family maths (``_draw``, ``_log_prob_value``, ``_sample_mean_value``) take a
    #: Python number as it is (Normal's ``scale``): a number ``forward`` returns for one of them stays a
    #: number for that maths (no tensor made and read back); every other reader gets a 0-dim tensor.
    #: Declared by the class whose maths it describes; a subclass overriding that maths loses it.
    _number_params: frozenset[str] = frozenset()
    #: The parameters an invalid value of which always shows in the draw as a NaN or infinite sample,
    #: the other parameters being valid (Normal: ``loc``, as ``loc + scale * eps``). Inside a joint,
    #: such a factor checks only its other parameters before drawing and leaves these to the joint,
    #: which checks every such sample at once (one reduction for all of them) and looks at a factor's
    #: parameters only when one is not finite, to name the culprit. Declared by the class whose
    #: sampler it describes; a subclass overriding it (or the domains) loses it.
    _draw_shows_invalid: frozenset[str] = frozenset()
    #: Whether ``_draw_own`` is the draw ``_draw`` would make: set for each class when it is defined
    #: (the class defining ``_draw_own`` must be that defining ``_draw`` or a subclass of it).
    _draw_own_usable = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._params_overridden = cls._get_params is not DistributionBase._get_params
        draws = next(k for k in cls.__mro__ if "_draw" in k.__dict__)
        draws_own = next(k for k in cls.__mro__ if "_draw_own" in k.__dict__)
        cls._draw_own_usable = draws_own is not DistributionBase and issubclass(draws_own, draws)
        own = cls.__dict__
        if "_score_flags_invalid" not in own and any(
            k in own for k in ("_log_prob_value", "param_support", "_value_support", "_get_params")
        ):
            cls._score_flags_invalid = False
        if "_draw_shows_invalid" not in own and any(
            k in own for k in ("_draw", "_sample_mean_value", "_mean", "param_support", "_get_params", "_sample")
        ):
            cls._draw_shows_invalid = frozenset()
        if "_number_params" not in own and any(
            k in own for k in ("_log_prob_value", "_draw", "_sample_mean_value", "_mean", "_get_params")
        ):
            cls._number_params = frozenset()
    event_ndim = 0
    #: the equivalent :mod:`torch.distributions` class, used as the fallback for the maths.
    distribution_torch_class: type | None = None
    #: the domain of each parameter; a parameter not listed is not checked.
    param_support: dict[str, _validation.Constraint] = {}

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        **params: Any,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape)
        # Internally _features_shape holds the feature dims only; the event dims (Pixyz counts them in
        # features_shape) are kept apart in _event_shape, empty until known.
        n_ev = self.event_ndim if len(self._features_shape) >= self.event_ndim else 0
        self._event_shape = self._features_shape[len(self._features_shape) - n_ev:]
        self._features_shape = self._features_shape[: len(self._features_shape) - n_ev]
        if len(self._var) != 1:
            raise GraphError(f"{self._owner()}: a {self.distribution_name} is over one variable, got {self._var}")
        self._param_vars: dict[str, str] = {}
        self._const_keys: list[str] = []
        for key, value in params.items():
            if key not in self.params_keys:
                raise ParameterError(
                    f"{self._owner()}: unknown parameter {key!r}; a {self.distribution_name} takes "
                    f"{list(self.params_keys)}"
                )
            if value is None:
                continue
            if isinstance(value, str):
                if value not in self._cond_var:
                    raise GraphError(
                        f"{self._owner()}: parameter {key}={value!r} names a variable that is not in "
                        f"cond_var {self._cond_var}"
                    )
                self._param_vars[key] = value
            else:
                self._register_constant(key, value)
        # A subclass that defines forward computes (some of) the parameters with its own network.
        self._custom_forward = type(self).forward is not DistributionBase.forward
        # (the parameter sets taken, the first compared alone: see _param_entry)
        sets = [frozenset(k) for k in self.params_key_sets] or [frozenset(self.params_keys)]
        self._keys_expected, self._keys_also = sets[0], frozenset(sets[1:])
        # (inside a joint, the parameters checked before a draw that shows the others: see _draw_shows_invalid)
        self._checked_before_draw = tuple(k for k in self.params_keys if k not in self._draw_shows_invalid)
        self._plan = _Plan(self)

    def _register_constant(self, key: str, value: Any) -> None:
        """Store a constant parameter: the one place constants are made tensors, shaped, kept as
        buffers (they move with ``.to(device)`` and are saved, never trained) and checked."""
        tensor = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(value)
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
        tensor = self._shaped_constant(key, tensor)
        self._validate_constant(key, tensor)
        self.register_buffer(key, tensor.clone())
        self._const_keys.append(key)

    def _shaped_constant(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """A constant's stored shape: ``(1, *features_shape)``; a family with another rule (an event
        dimension, a scalar temperature) overrides this. ``features_shape``, when not given, is the
        first constant's shape."""
        if len(self._features_shape) == 0 and tensor.ndim > 0:
            self._features_shape = tensor.shape
        try:
            tensor = tensor.expand(self._features_shape)
        except RuntimeError as e:
            raise ShapeError(
                f"{self._owner()}: parameter {key} of shape {tuple(tensor.shape)} does not fit "
                f"features_shape {tuple(self._features_shape)}"
            ) from e
        return tensor.unsqueeze(0)

    def __setattr__(self, name: str, value: Any) -> None:
        consts = self.__dict__.get("_const_keys")
        if consts and name in consts and isinstance(value, torch.Tensor):
            # A constant given anew is checked as when it was first given, before it replaces the old
            # one: a refused value is not kept.
            self._validate_constant(name, value)
        super().__setattr__(name, value)
        if name in _PLAN_INPUTS and "_plan" in self.__dict__:
            self._plan = _Plan(self)  # (made from this attribute: made anew)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_plan", None)  # (remade on loading: it holds the domains' tests, which do not pickle)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_checked_before_draw" in self.__dict__:
            self._plan = _Plan(self)

    def _validate_constant(self, key: str, value: torch.Tensor) -> None:
        """Check a constant parameter when it is given or assigned. A constant kept as a buffer is not
        checked again on each use (nothing trains it); one replaced by an ``nn.Parameter`` is."""
        support = self.param_support.get(key)
        if support is not None:
            _validation.check(self._owner, [(key, value, support)], ParameterError,
                              lambda k: f"parameter {k!r} (a constant)")

    @property
    def features_shape(self) -> torch.Size:
        """The shape of one data point of the variable, event dimensions included (as in Pixyz).

        Empty when the parameters come from a network and no ``features_shape`` was given.
        """
        return self._features_shape + self._event_shape

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compute the parameters from the conditioning variables (override with a network)."""
        return {}

    # ------------------------------------------------------------------ parameters
    def _expected_keys_text(self) -> str:
        if not self.params_key_sets:
            return str(sorted(self.params_keys))
        return " or ".join(str(list(keys)) for keys in self.params_key_sets)

    def _get_params(self, x_dict: Mapping[str, Any], ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        """The family's parameters given the inputs in ``x_dict``: from ``forward``, conditioning
        variables and constants, checked (keys, types, shapes, domains) and memoised in ``ctx``."""
        return self._params_and_shape(x_dict, ctx)[0]

    def _params_and_shape(
        self, x_dict: Mapping[str, Any], ctx: EvalContext | None
    ) -> tuple[dict[str, torch.Tensor], torch.Size]:
        """The parameters and their broadcast shape ``(batch, *features[, event])``, both checked.

        A subclass that computes its parameters otherwise (overriding ``_get_params``) gets the shape of
        what it returns; the usual path computes both once per evaluation and memoises them together.
        """
        entry = _param_entry(self, self._plan, x_dict, ctx, True)
        return entry.params, entry.shape

    def _fill_params(self, params: dict[str, Any], x_dict: Mapping[str, Any]) -> None:
        """Add the parameters read from conditioning variables and the constants (``forward``'s win)."""
        for key, var in self._param_vars.items():
            params.setdefault(key, x_dict[var])
        buffers = self._buffers
        for key in self._const_keys:
            value = buffers.get(key)  # (a constant replaced by an nn.Parameter is an attribute now)
            params.setdefault(key, value if value is not None else getattr(self, key))

    def _param_source(self, key: str, from_forward: tuple[str, ...]) -> str:
        if key in from_forward:
            return f"parameter {key!r} (from forward())"
        if key in self._param_vars:
            return f"parameter {key!r} (conditioning variable {self._param_vars[key]!r})"
        return f"parameter {key!r} (a constant)"

    def _as_tensors(
        self, params: dict[str, Any], inputs: tuple[Any, ...], from_forward: tuple[str, ...]
    ) -> tuple[str, ...]:
        """Make every parameter a floating tensor, in place: plain numbers (Pixyz lets ``forward``
        return them) become 0-dim tensors of the dtype and device of the first tensor parameter (or
        input), so they broadcast like torch.distributions' numbers; integer or bool tensors become
        floating. A number for one of ``_number_params`` in its domain stays a Python float when
        another parameter is a floating tensor (whose dtype and device the number takes where a tensor
        is needed): the keys so kept are returned. (The usual case is decided in one pass by
        ``_usual_params``, before this.)"""
        ref, floating = None, False
        kept: tuple[str, ...] = ()
        for key, value in params.items():
            if type(value) is torch.Tensor or isinstance(value, torch.Tensor):
                if value.is_floating_point():
                    floating = True
                    continue
                if ref is None:
                    ref = self._reference_tensor(params, inputs)
                params[key] = value.to(ref.dtype if ref.is_floating_point() else torch.get_default_dtype())
            elif type(value) is float or type(value) is int or isinstance(value, numbers.Real):
                if _kept_number(self._plan, key, float(value)):
                    params[key] = float(value)
                    kept += (key,)
                    continue
                if ref is None:
                    ref = self._reference_tensor(params, inputs)
                dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
                params[key] = torch.scalar_tensor(float(value), dtype=dtype, device=ref.device)  # 4x torch.tensor
            else:
                raise ParameterError(
                    f"{self._owner()}: {self._param_source(key, from_forward)} must be a tensor or a number, "
                    f"got {type(value).__name__}"
                )
        if kept and not floating and not any(isinstance(v, torch.Tensor) and v.is_floating_point()
                                             for v in params.values()):
            # (no tensor to take a dtype and device from: made tensors as any other number)
            ref = self._reference_tensor(params, inputs)
            dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            for key in kept:
                params[key] = torch.scalar_tensor(params[key], dtype=dtype, device=ref.device)
            kept = ()
        return kept

    def _check_param_shapes(self, params: dict[str, Any], inputs: tuple[Any, ...],
                            from_forward: tuple[str, ...]) -> torch.Size:
        """The parameters' broadcast shape, checked: they must broadcast with each other, fit
        ``features_shape``, and those from ``forward`` must keep the batch size of the inputs (or 1): a
        network returning 3 rows for a 4-row batch is refused."""
        try:
            # (a number kept as a float broadcasts as a 0-dim tensor: it adds nothing to the shape)
            shapes = [p.shape for p in params.values() if type(p) is not float]
            shape = shapes[0] if len(shapes) == 1 else broadcast_shapes(shapes)
        except RuntimeError as e:
            sources = "; ".join(f"{self._param_source(k, from_forward)}: {tuple(v.shape)}" for k, v in params.items())
            raise ShapeError(
                f"{self._owner()}: its parameters do not broadcast with each other ({sources}); expected shapes "
                "(batch, *features) that broadcast"
            ) from e
        return _check_shape(self, self._plan, shape, params, inputs, from_forward)

    @staticmethod
    def _reference_tensor(params: Mapping[str, Any], inputs: tuple[Any, ...]) -> torch.Tensor:
        """The tensor whose dtype and device numbers take: the first floating parameter, else the first
        tensor parameter, else the first tensor input."""
        first = None
        for v in params.values():
            if isinstance(v, torch.Tensor):
                if v.is_floating_point():
                    return v
                first = v if first is None else first
        if first is not None:
            return first
        given = next((v for v in inputs if isinstance(v, torch.Tensor)), None)
        return given if given is not None else torch.zeros(())

    def _validate_params(self, params: dict[str, Any], from_forward: tuple[str, ...],
                         skip: frozenset[str] = frozenset()) -> None:
        """Check each parameter against its domain, but the constants (checked when given: they are
        buffers, nothing trains them) and those in ``skip`` (checked otherwise by the caller)."""
        if not _validation.validation_enabled():
            return
        # Constants were checked when given, and are buffers: nothing trains them between calls.
        support, buffers = self.param_support, self._buffers
        items = []
        for k, t in params.items():
            c = support.get(k)
            # (a number kept as a float was found in its domain when kept: see _kept_number)
            if c is not None and type(t) is not float and k not in skip and t is not buffers.get(k):
                items.append((k, t, c))
        if items:
            _validation.check(self._owner, items, ParameterError, lambda k: self._param_source(k, from_forward))

    def _value_support(self) -> _validation.Constraint | None:
        """The support of the variable (``None``: not checked)."""
        return None

    def get_params(self, params_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The family's parameters given the conditioning variables (``{"loc": ..., "scale": ...}``)."""
        check_options(lambda: f"{self._owner()}.get_params()", kwargs, ())
        x_dict = self._as_dict(params_dict, "get_params")
        self._require(x_dict, self.input_var, "get_params")
        return self._get_params(x_dict, None)

    def _checked_shape(self, params: dict[str, torch.Tensor]) -> torch.Size:
        """The broadcast shape ``(batch, *features[, event])`` of parameters made elsewhere, checked."""
        shape = broadcast_shapes([p.shape for p in params.values()])
        self._check_features(shape)
        return shape

    def _check_features(self, shape: torch.Size) -> None:
        """The parameters' shape must end in ``features_shape`` (then the event shape)."""
        # The features are the trailing dims (before any event dim); leading dims beyond the batch are
        # sample dims, e.g. parameters computed from inputs that carry them.
        n_f, end = len(self._features_shape), len(shape) - self.event_ndim
        if n_f and (end - n_f < 1 or tuple(shape[end - n_f : end]) != tuple(self._features_shape)):
            raise ShapeError(
                f"{self._owner()}: its parameters have shape {tuple(shape)}, which does not match "
                f"features_shape {tuple(self._features_shape)} (expected (*sample_shape, batch, *features_shape))"
            )
        if len(self._event_shape) and tuple(shape[end:]) != tuple(self._event_shape):
            raise ShapeError(
                f"{self._owner()}: its parameters have shape {tuple(shape)}, whose last dimension should be "
                f"the {self._event_shape[-1]} categories of features_shape {tuple(self.features_shape)}"
            )

    def _batch_shape(self, shape: torch.Size, batch_n: int | None) -> torch.Size:
        """The parameters' (checked) shape with ``batch_n`` applied to a batch dimension of 1."""
        if batch_n is not None and len(shape) > 0 and shape[0] != batch_n:
            if shape[0] != 1:
                raise ShapeError(
                    f"{self._owner()}: batch_n={batch_n} conflicts with the batch size {shape[0]} of its inputs"
                )
            shape = torch.Size((batch_n,)) + shape[1:]
        return shape

    def _n_feat_of(self, shape: torch.Size) -> int | None:
        """Number of feature dimensions of parameters of broadcast shape ``shape``: from
        ``features_shape``, else from the ``(batch, *features)`` shape."""
        return _features_count(self._plan, shape)

    # ------------------------------------------------------------------ family maths (override)
    def _torch_dist(self, params: dict[str, torch.Tensor]) -> torch.distributions.Distribution:
        if self.distribution_torch_class is None:
            raise NotDefinedError(f"{self._owner()}: no torch.distributions equivalent")
        return self.distribution_torch_class(**params, validate_args=False)

    def _log_prob_value(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        return self._torch_dist(params).log_prob(value)

    def _draw(self, params: dict[str, torch.Tensor], shape: torch.Size, reparam: bool) -> torch.Tensor:
        # torch's Gamma/Dirichlet samplers have no half-precision kernels: draw in float32 from the
        # (autocast) half-precision parameters, and return the sample in their dtype.
        low = next((v.dtype for v in params.values() if v.dtype in (torch.bfloat16, torch.float16)), None)
        if low is not None:
            params = {k: v.float() for k, v in params.items()}
        dist = self._torch_dist({k: v.expand(shape[-v.ndim:]) if v.ndim else v for k, v in params.items()})
        n_batch = len(dist.batch_shape) + len(dist.event_shape)
        sample_shape = shape[: len(shape) - n_batch]
        sample = dist.rsample(sample_shape) if reparam else dist.sample(sample_shape)
        return sample if low is None else sample.to(low)

    def _draw_own(self, params: dict[str, torch.Tensor], reparam: bool) -> torch.Tensor:
        """``_draw(params, shape, reparam)`` when every tensor parameter has exactly the sample's
        ``shape`` (the usual case: parameters from a network, one draw each), so nothing needs expanding
        or comparing. A family may write it out; it is used only when the class defining it is the one
        defining ``_draw`` or a subclass of it (a subclass overriding ``_draw`` alone does not get it)."""
        raise NotImplementedError

    def _entropy(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        try:
            return self._torch_dist(params).entropy()
        except NotImplementedError as e:
            raise NotDefinedError(
                f"{self._owner()}: the entropy of a {self.distribution_name} has no closed form"
            ) from e

    def _mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._torch_dist(params).mean

    def _sample_mean_value(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """What ``sample(sample_mean=True)`` returns: the mean, unless a family says otherwise."""
        return self._mean(params)

    def _variance(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._torch_dist(params).variance

    # ------------------------------------------------------------------ protocol
    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        batch_n, sample_shape, reparam, sample_mean = spec
        plan = self._plan
        defer = plan.draw_shows and ctx.sampling_factor is self and ctx.deferred_draws is not None
        entry = _param_entry(self, plan, x_dict, ctx, not defer)
        params, shape = entry.raw, entry.shape  # (the family's own maths: numbers kept, see _number_params)
        # The parameters the sample does not show are checked now (none left when they are numbers, kept
        # only when valid); the joint checks the sample.
        if defer and entry.numbers != plan.checked_before_draw:
            self._validate_params(params, entry.from_forward, plan.draw_shows)
        if batch_n is not None and len(shape) and shape[0] != batch_n:
            shape = self._batch_shape(shape, batch_n)
        if len(sample_shape):
            shape = sample_shape + shape
        if sample_mean:
            value = self._sample_mean_value(params).expand(shape)
        else:
            if reparam:
                reparam = plan.reparam if plan.reparam is not None else self.has_reparam
            if plan.draw_own and entry.own and shape is entry.shape:
                # (every tensor parameter has the sample's shape; the method read off the class, as an
                # nn.Module's attribute read is slow)
                value = type(self)._draw_own(self, params, reparam)
            else:
                value = self._draw(params, shape, reparam)
        if defer:
            ctx.deferred_draws.append((self, entry, value, shape))  # type: ignore[union-attr]  # (shape: value's)
        return {plan.var: value}

    def _check_value(self, params: dict[str, torch.Tensor], shape: torch.Size, value: Any) -> torch.Tensor:
        """``value`` as a tensor whose shape broadcasts with the parameters' (checked) ``shape``."""
        var = self._var[0]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{self._owner()}: variable {var!r} must be a tensor, got {type(value).__name__}")
        if value.shape == shape:
            return value
        feat = shape[1:]
        if len(feat) and (value.ndim < len(feat) or tuple(value.shape[value.ndim - len(feat):]) != tuple(feat)):
            raise ShapeError(
                f"{self._owner()}: variable {var!r} has shape {tuple(value.shape)}, but the parameters have "
                f"shape {tuple(shape)}: expected (*sample_shape, batch, {', '.join(map(str, feat))})"
            )
        try:
            broadcast_shapes([value.shape[: value.ndim - self.event_ndim], shape[: len(shape) - self.event_ndim]])
        except RuntimeError as e:
            raise ShapeError(
                f"{self._owner()}: variable {var!r} of shape {tuple(value.shape)} does not broadcast with its "
                f"parameters ({_shapes(params)}): expected (*sample_shape, batch, *features)"
            ) from e
        return value

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        validating = _validation.validation_enabled()
        # With a self-checking score, the domains are checked through the log-density (below).
        plan = self._plan
        entry = _param_entry(self, plan, x_dict, ctx, not plan.score_flags)
        params, shape = entry.raw, entry.shape  # (the family's own maths: numbers kept, see _number_params)
        given = x_dict[plan.var]
        if type(given) is not torch.Tensor or given.shape != shape:  # (the usual value has the parameters' shape)
            given = self._check_value(params, shape, given)
        params, value = _promote(params, given)
        # A floating value is checked in its own dtype (a bfloat16 sample on the simplex sums to 1
        # within bfloat16's rounding, not float32's); bool and integer values once made floating.
        checked = given if given.is_floating_point() else value
        if validating and entry.validated:
            _validation.check_value(self._owner, plan.var, checked, self._value_support())
        # (the family's maths read off the class: an nn.Module's attribute read is slow)
        lp = reduce_features(type(self)._log_prob_value(self, params, value), _features_count(plan, shape), spec)
        if validating and not entry.validated:
            if ctx.scoring_factor is self and ctx.deferred_checks is not None:
                ctx.deferred_checks.append((self, entry, checked))  # the joint checks its total
            elif not _validation.surely_finite(lp):
                self._name_invalid(entry, checked)
        return lp

    def _name_invalid(self, entry: _ParamEntry, value: torch.Tensor) -> None:
        """After a self-checking log-density came out NaN or infinite: raise the named error for the
        parameter or value that made it so; if none did (an overflow), return and let the value stand."""
        self._validate_params(entry.params, entry.from_forward)
        _validation.check_value(self._owner, self._var[0], value, self._value_support())

    def get_entropy(self, x_dict: Mapping[str, Any] | None = None, sum_features: bool = True,
                    feature_dims: Sequence[int] | None = None) -> torch.Tensor:
        x_dict = self._as_dict(x_dict, "get_entropy")
        self._require(x_dict, self.input_var, "get_entropy")
        params, shape = self._params_and_shape(x_dict, None)
        return self._entropy_per_point(params, shape, ScoreSpec.of(sum_features, feature_dims))

    def _entropy_per_point(self, params: dict[str, torch.Tensor], shape: torch.Size, spec: ScoreSpec) -> torch.Tensor:
        """The closed-form entropy of parameters of broadcast ``shape``, one value per data point even
        when it depends only on a constant (Normal's ``scale``), summed as ``spec`` says."""
        h = self._entropy(params)
        n = len(shape) - self.event_ndim
        if h.ndim < n or (h.ndim == n and h.shape != shape[:n]):
            h = h.expand(shape[:n])
        return reduce_features(h, self._n_feat_of(shape), spec)

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        x_dict = self._as_dict(x_dict, "sample_mean")
        self._require(x_dict, self.input_var, "sample_mean")
        params, shape = self._params_and_shape(x_dict, None)
        return self._mean(params).expand(shape)

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        x_dict = self._as_dict(x_dict, "sample_variance")
        self._require(x_dict, self.input_var, "sample_variance")
        params, shape = self._params_and_shape(x_dict, None)
        return self._variance(params).expand(shape)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        for key in self._const_keys:
            text += f"\n({key}): {getattr(self, key).shape}"
        return text



# Pixyz's pixyz.distributions.distributions also held the products, the graph classes and the
# log-density losses; here each has its own module, and these names are imported on first use (the
# modules import this one).
_PIXYZ_NAMES = {
    "MultiplyDistribution": (".joint", "MultiplyDistribution"),
    "ReplaceVarDistribution": (".joint", "ReplaceVarDistribution"),
    "MarginalizeVarDistribution": (".joint", "MarginalizeVarDistribution"),
    "Factor": (".graph", "Factor"),
    "DistGraph": (".graph", "DistributionGraph"),
    "LogProb": ("..losses.pdf", "LogProb"),
    "Prob": ("..losses.pdf", "Prob"),
}


def __getattr__(name: str) -> Any:
    if name in _PIXYZ_NAMES:
        import importlib

        module, attr = _PIXYZ_NAMES[name]
        return getattr(importlib.import_module(module, __package__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
