"""The :class:`Model`: a loss, the distributions it trains, an optimizer and a device."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn, optim

from .._options import check_options
from ..distributions.distributions import Distribution
from ..errors import CheckpointError, OptionError, ShapeError
from ..losses.losses import Loss
from ..utils import tolist
from . import _checkpoint as ckpt
from .step import Stepper
from .training import fit as _fit

__all__ = ["Model", "CheckpointError"]

# Keywords of Loss.eval that shape its result: Model.train needs the loss alone, so they are not options.
_RESULT_KEYWORDS = frozenset({"return_dict", "return_all", "return_terms"})


# Options Loss.eval takes for every formula (besides those of the losses in it).
_EVERY_LOSS_OPTIONS = frozenset({"test_mode"})


def _loss_options(loss: Any) -> frozenset[str]:
    """The options ``loss.eval`` accepts (its own keywords and those of the losses in its formula),
    plus ``return_terms``; computed once per loss, when it is given to the model."""
    if hasattr(loss, "eval_options"):  # the loss knows its whole set
        return frozenset(set(loss.eval_options()) - _RESULT_KEYWORDS) | {"return_terms"}
    options = set(loss._valid_options()) | _EVERY_LOSS_OPTIONS if isinstance(loss, Loss) else set()
    try:
        params = list(inspect.signature(loss.eval).parameters.values())[1:]  # after x_dict
    except (TypeError, ValueError):
        params = []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    options |= {p.name for p in params if p.kind in kinds and p.name not in _RESULT_KEYWORDS}
    return frozenset(options | {"return_terms"})


def _clip_option(name: str, value: Any) -> float | None:
    """``None``, or a positive finite number: a clipping threshold."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(f"Model: {name} must be a positive number or None, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise OptionError(
            f"Model: {name} must be a positive finite number (or None for no clipping), got {value!r}: "
            + ("a threshold of 0 or less would zero or reverse the gradients" if value <= 0 else
               "a non-finite threshold turns the gradients into NaN")
        )
    return float(value)


# Optimizers whose fused kernel (one kernel for all parameters) Model uses unless told otherwise.
_FUSABLE: tuple[type[optim.Optimizer], ...] = (optim.Adam, optim.AdamW)
# optimizer_params that choose an implementation (or exclude the fused one) themselves.
_IMPLEMENTATION_OPTIONS = frozenset({"fused", "foreach", "differentiable", "capturable"})


def _fused_supported(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch has a fused optimizer kernel for every parameter's device and dtype."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # an older torch: no fused kernels outside CUDA
        return False
    devices = set(_get_fused_kernels_supported_devices())
    return all(p.is_floating_point() and not p.is_sparse and p.device.type in devices for p in params)


def _make_optimizer(cls: type[optim.Optimizer], params: list[nn.Parameter],
                    optimizer_params: Mapping[str, Any] | None) -> optim.Optimizer:
    """``cls(params, **optimizer_params)``; Adam and AdamW fused where supported and not chosen otherwise
    (their per-parameter loops were about 15% of the quick-start VAE's CPU step)."""
    kwargs = dict(optimizer_params or {})
    if cls in _FUSABLE and not (_IMPLEMENTATION_OPTIONS & kwargs.keys()) and _fused_supported(params):
        kwargs["fused"] = True
    return cls(params, **kwargs)


class Model:
    r"""Trains a loss with respect to the parameters of the given distributions.

    Args:
        loss: the training loss (must evaluate to a scalar, e.g. end with ``.mean()``).
        test_loss: the loss ``test`` reports (defaults to ``loss``).
        distributions: the distributions (or any ``nn.Module``) whose parameters are trained; one whose
            parameters the loss never uses is reported with a warning (it would train nothing).
        optimizer: an optimizer class; ``optimizer_params`` are its keyword arguments. Adam and
            AdamW (Adam is the default) use torch's fused kernel (``fused=True``) where every
            parameter's device supports it, unless ``optimizer_params`` sets ``fused``, ``foreach``,
            ``differentiable`` or ``capturable``.
        clip_grad_norm: clip the gradients' total norm to this value before each step (a positive
            finite number, or ``None``).
        clip_grad_value: clip each gradient element to ``[-value, value]`` before each step (a
            positive finite number, or ``None``).
        retain_graph: passed to ``backward``.
        device: where the distributions live; each batch is moved there.

    Raises:
        OptionError: a clipping threshold that is not a positive finite number (Pixyz ignored 0 and
            reversed the gradients for a negative one).

    A step whose loss or gradients are not finite is never taken: :meth:`train` raises
    :class:`~pixyz_like.errors.NonFiniteLossError` (or
    :class:`~pixyz_like.errors.NonFiniteGradientError`) first, leaving the parameters and the optimizer's
    state as they were.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())  # a learnable mean
    >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1})
    >>> loss = model.train({"x": torch.full((8, 1), 2.0)})
    >>> loss.requires_grad
    False
    """

    def __init__(
        self,
        loss: Loss,
        test_loss: Loss | None = None,
        distributions: Sequence[nn.Module] | nn.Module = (),
        optimizer: type[optim.Optimizer] = optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        retain_graph: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        self.clip_norm = clip_grad_norm
        self.clip_value = clip_grad_value
        self.loss_cls: Loss
        self.test_loss_cls: Loss
        self.set_loss(loss, test_loss)
        modules = tolist(distributions)
        for m in modules:
            if not isinstance(m, nn.Module):
                raise TypeError(f"Model: distributions must be Distributions or nn.Modules, got {type(m).__name__}")
        self.distributions = nn.ModuleList(modules)
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            self.distributions.to(self.device)
            self.loss_cls.to(self.device)
            self.test_loss_cls.to(self.device)
        params = list(self.distributions.parameters())
        if not params:
            raise ValueError("Model: the distributions given have no trainable parameters")
        self._warn_unused(modules)
        self.optimizer = _make_optimizer(optimizer, params, optimizer_params)
        self.retain_graph = retain_graph
        self._stepper = Stepper(self)  # Model.train's step (fit builds its own, with its options)

    def set_loss(self, loss: Loss, test_loss: Loss | None = None) -> None:
        """Replace the training (and test) loss.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> model = Model(-p.log_prob().mean(), distributions=[p])
        >>> model.set_loss(-p.log_prob().sum())
        >>> print(model.loss_cls)
        - sum \\left(\\log p(x) \\right)
        """
        self.loss_cls = loss
        self.test_loss_cls = test_loss if test_loss is not None else loss
        # The options each loss accepts, found once here (not by walking the formula at every step).
        self._train_options = _loss_options(self.loss_cls)
        self._test_options = _loss_options(self.test_loss_cls)

    @property
    def clip_norm(self) -> float | None:
        """The gradient-norm clipping threshold (``clip_grad_norm``); setting it checks the value."""
        return self._clip_norm

    @clip_norm.setter
    def clip_norm(self, value: float | None) -> None:
        self._clip_norm = _clip_option("clip_grad_norm", value)

    @property
    def clip_value(self) -> float | None:
        """The gradient-value clipping threshold (``clip_grad_value``); setting it checks the value."""
        return self._clip_value

    @clip_value.setter
    def clip_value(self, value: float | None) -> None:
        self._clip_value = _clip_option("clip_grad_value", value)

    def _warn_unused(self, modules: Sequence[nn.Module]) -> None:
        """Warn about each module passed for training whose parameters the training loss never reaches."""
        if not isinstance(self.loss_cls, nn.Module):
            return
        used = {id(p) for p in self.loss_cls.parameters()}
        for m in modules:
            own = list(m.parameters())
            if own and not any(id(p) in used for p in own):
                name = m.prob_text if isinstance(m, Distribution) else type(m).__name__
                warnings.warn(
                    f"Model: {name} was given for training, but the loss {self.loss_cls} does not use it, so "
                    "training will not change it (if the loss reaches it some other way, register it as a "
                    "submodule of a distribution the loss uses)",
                    UserWarning,
                    stacklevel=3,
                )

    # ------------------------------------------------------------------ text
    def __str__(self) -> str:
        probs = [m.prob_text for m in self.distributions if isinstance(m, Distribution)]
        funcs = [str(m) for m in self.distributions if not isinstance(m, Distribution)]
        text = f"Distributions (for training):\n  {', '.join(probs)}\n"
        if funcs:
            text += f"Deterministic functions (for training):\n  {', '.join(funcs)}\n"
        text += f"Loss function:\n  {self.loss_cls}\n"
        text += "Optimizer:\n" + re.sub("^", "  ", str(self.optimizer), flags=re.MULTILINE)
        return text

    def _repr_latex_(self) -> str:
        return f"${self.loss_cls.loss_text}$"

    # ------------------------------------------------------------------ steps
    def _to_device(self, x_dict: Mapping[str, Any] | None, where: str = "Model") -> dict[str, Any]:
        """The batch as a dict on the model's device; an empty batch (0 rows) is refused."""
        x_dict = {} if x_dict is None else x_dict
        if not isinstance(x_dict, Mapping):
            raise TypeError(f"{where}: expected a dict of tensors {{name: tensor}}, got {type(x_dict).__name__}")
        for name, v in x_dict.items():
            if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == 0:
                raise ShapeError(
                    f"{where}: variable {name!r} is an empty batch (shape {tuple(v.shape)}); a batch needs at "
                    "least one row (the loss of no data is undefined and no step is taken)"
                )
        if self.device is None:
            return dict(x_dict)
        return {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in x_dict.items()
        }

    def _check_options(self, where: str, loss: Loss, options: Mapping[str, Any]) -> None:
        if loss is self.loss_cls:
            valid = self._train_options
        elif loss is self.test_loss_cls:
            valid = self._test_options
        else:
            valid = _loss_options(loss)
        check_options(where, options, valid)

    def _device(self) -> torch.device:
        """Where the model trains: ``device``, else that of its first parameter."""
        if self.device is not None:
            return self.device
        return next(self.distributions.parameters()).device

    def _overrides(self, method: str) -> bool:
        """Whether this model's class defines its own ``method`` (``"train"``, ``"test"``)."""
        return getattr(type(self), method) is not getattr(Model, method)

    def train(self, train_x_dict: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """One optimisation step on a batch; returns the loss, detached (and the terms if asked).

        ``options`` are passed to the loss's ``eval`` (e.g. ``batch_n=8`` for a model with no inputs);
        ``return_terms=True`` returns ``(loss, {term: value})`` with each named term's batch mean.
        The step is :mod:`pixyz_like.models.step`'s, the one ``fit`` takes.

        Raises:
            NonFiniteLossError: the loss is NaN or infinite (the message names the inputs and terms
                that are not finite); the step is not taken.
            NonFiniteGradientError: a gradient is NaN or infinite; the step is not taken.
            ShapeError: an empty batch, or a loss that is not a scalar.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer=torch.optim.SGD,
        ...               optimizer_params={"lr": 0.5})
        >>> loss, terms = model.train({"x": torch.full((4, 1), 2.0)}, return_terms=True)
        >>> round(loss.item(), 4), list(terms), p.loc.item()
        (2.9189, ['log p(x)'], 1.0)
        """
        if not torch.is_grad_enabled():
            raise OptionError("Model.train(): called with gradients disabled (inside torch.no_grad() or "
                              "torch.inference_mode()); a training step needs them: call it outside that block")
        self._check_options("Model.train()", self.loss_cls, options)
        return_terms = options.pop("return_terms", False)
        x_dict = self._to_device(train_x_dict, "Model.train()")
        # Pixyz puts the networks in training mode at every step; walking them to find one that is not
        # costs a fifth of the recursive train() call, which then runs only when it changes something.
        if not all(m.training for m in self.distributions.modules()):
            self.distributions.train()
        result = self._stepper.step(x_dict, options, return_terms, "Model.train()")
        return (result.loss, result.terms) if return_terms else result.loss

    def test(self, test_x_dict: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Evaluate the test loss without gradients, networks in eval mode; returns it detached.

        ``options`` are passed to the test loss's ``eval`` (e.g. ``batch_n=8``, ``return_terms=True``).

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> Model(-p.log_prob().mean(), distributions=[p]).test({"x": torch.zeros(2, 1)})
        tensor(0.9189)
        """
        self._check_options("Model.test()", self.test_loss_cls, options)
        return_terms = options.pop("return_terms", False)
        x_dict = self._to_device(test_x_dict, "Model.test()")
        self.distributions.eval()
        try:
            with torch.no_grad():
                result = self.test_loss_cls.eval(x_dict, return_terms=return_terms, **options)
        finally:
            self.distributions.train()
        return result

    # ------------------------------------------------------------------ checkpoints
    def _named_optimizers(self) -> dict[str, optim.Optimizer]:
        """Every optimizer the model steps: ``self.optimizer``, others a subclass keeps as attributes
        (e.g. a critic's ``d_optimizer``) and those kept by losses (e.g. an adversarial loss's)."""
        found: dict[str, optim.Optimizer] = {}
        seen: set[int] = set()

        def add(name: str, obj: Any) -> None:
            if isinstance(obj, optim.Optimizer) and id(obj) not in seen:
                seen.add(id(obj))
                found[name] = obj

        add("optimizer", self.optimizer)
        for name, obj in sorted(vars(self).items()):
            add(name, obj)
        for prefix, loss in (("loss", self.loss_cls), ("test_loss", self.test_loss_cls)):
            for mname, module in loss.named_modules():
                for name, obj in sorted(vars(module).items()):
                    add(".".join(filter(None, [prefix, mname, name])), obj)
        return found

    def _extra_modules(self) -> dict[str, nn.Module]:
        """Networks with state that the losses hold besides ``self.distributions`` (e.g. a critic)."""
        own = {id(m) for m in self.distributions.modules()}
        found: dict[str, nn.Module] = {}
        for name, obj in sorted(vars(self).items()):
            if isinstance(obj, nn.Module) and name not in ("distributions", "loss_cls", "test_loss_cls"):
                if id(obj) not in own and obj.state_dict():
                    own.update(id(m) for m in obj.modules())
                    found[name] = obj
        for prefix, loss in (("loss", self.loss_cls), ("test_loss", self.test_loss_cls)):
            for mname, module in loss.named_modules():
                # A module that is not part of the formula's algebra (not a Loss) and not trained
                # through self.distributions: a discriminator, a fixed network with buffers...
                if isinstance(module, Loss) or id(module) in own:
                    continue
                own.update(id(m) for m in module.modules())
                if module.state_dict():
                    found[f"{prefix}.{mname}"] = module
        return found

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the state of the distributions, of every optimizer (the
        model's and any a subclass or a loss keeps, e.g. a critic's) and of other networks the losses
        hold (e.g. a discriminator).

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> sorted(Model(-p.log_prob().mean(), distributions=[p]).state_dict())
        ['distributions', 'format', 'modules', 'optimizer', 'optimizers']
        """
        optimizers = self._named_optimizers()
        return {
            "format": ckpt.FORMAT,
            "distributions": self.distributions.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items() if k != "optimizer"},
            "modules": {k: m.state_dict() for k, m in self._extra_modules().items()},
        }

    @staticmethod
    def _mismatch(what: str, own: Mapping[str, Any], theirs: Mapping[str, Any]) -> str | None:
        missing = sorted(set(own) - set(theirs))
        unexpected = sorted(set(theirs) - set(own))
        shapes = sorted(
            k for k in set(own) & set(theirs)
            if isinstance(own[k], torch.Tensor)
            and isinstance(theirs[k], torch.Tensor)
            and own[k].shape != theirs[k].shape
        )
        detail = []
        if missing:
            detail.append(f"missing {missing[:5]}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:5]}")
        if shapes:
            detail.append(
                "shape mismatch "
                + ", ".join(f"{k}: {tuple(theirs[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5])
            )
        return f"{what}: " + "; ".join(detail) if detail else None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (or Pixyz's ``{"distributions": ...}``).

        Raises :class:`~pixyz_like.errors.CheckpointError` if it is another model's, or malformed.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> model = Model(-p.log_prob().mean(), distributions=[p])
        >>> model.load_state_dict({"format": "something else"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pixyz_like.errors.CheckpointError: Model.load_state_dict(): ... is not a pixyz_like or Pixyz Model ...
        """
        source = "Model.load_state_dict(): the state"
        self._load_state(state, source, ckpt.check_layout(state, source, require_digest=False))

    def _load_state(self, state: Mapping[str, Any], source: str, layout: str) -> None:
        """Check every entry of ``state`` against this model, then load it (nothing is loaded on error)."""
        if layout == "pixyz":
            self._load_pixyz(state, source)
            return
        ckpt.check_entries(state, source)
        modules = self._extra_modules()
        optimizers = self._named_optimizers()
        saved_modules = state["modules"]
        saved_optimizers = {"optimizer": state["optimizer"], **state["optimizers"]}
        problems = [self._mismatch("distributions", self.distributions.state_dict(), state["distributions"])]
        problems.append(self._mismatch("networks held by the losses", {k: 0 for k in modules}, saved_modules))
        problems += [self._mismatch(f"network {k}", m.state_dict(), saved_modules[k])
                     for k, m in modules.items() if k in saved_modules]
        problems.append(self._mismatch("optimizers", {k: 0 for k in optimizers}, saved_optimizers))
        for k, o in optimizers.items():
            if k in saved_optimizers:
                ours = [len(g["params"]) for g in o.state_dict()["param_groups"]]
                theirs = [len(g["params"]) for g in saved_optimizers[k]["param_groups"]]
                if ours != theirs:
                    problems.append(f"optimizer {k}: parameter groups of sizes {theirs} vs {ours}")
        found = [p for p in problems if p]
        if found:
            raise CheckpointError(
                f"{source} belongs to another model ({type(self).__name__}): " + " | ".join(found)
            )
        self.distributions.load_state_dict(state["distributions"])
        for k, m in modules.items():
            m.load_state_dict(saved_modules[k])
        for k, o in optimizers.items():
            o.load_state_dict(saved_optimizers[k])

    def _load_pixyz(self, state: Mapping[str, Any], source: str) -> None:
        """Pixyz's ``Model.save`` kept the distributions' parameters only: load them (the optimizer
        starts afresh, as with Pixyz's ``Model.load``)."""
        theirs = ckpt.check_module_state(state["distributions"], "'distributions'", source)
        own = self.distributions.state_dict()
        theirs = ckpt.from_pixyz_names(theirs, own, source)
        problem = self._mismatch("distributions", own, theirs)
        if problem:
            raise CheckpointError(f"{source} (a Pixyz checkpoint) belongs to another model: {problem}")
        self.distributions.load_state_dict(theirs)

    def save(self, path: str | os.PathLike) -> None:
        """Save the state of the distributions, optimizers and other networks to ``path``: atomically,
        with a digest that :meth:`load` checks.

        The file is a ``torch.save`` of :meth:`state_dict` (so Pixyz's ``Model.load`` reads its
        ``"distributions"`` too).

        >>> import os, tempfile
        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> model = Model(-p.log_prob().mean(), distributions=[p])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
        >>> model.save(path)
        >>> model.load(path)
        """
        ckpt.write_checkpoint(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by :meth:`save` or :meth:`fit`, or by Pixyz 0.3.3's ``Model.save``.

        Only tensors and plain data are unpickled. A file that cannot be read, fails its integrity
        check, lacks an entry or belongs to another model raises
        :class:`~pixyz_like.errors.CheckpointError` naming the file and the problem, and leaves the
        model as it was.
        """
        self._load_file(path, "Model.load()")

    def _load_file(self, path: str | os.PathLike, where: str,
                   check: Callable[[Mapping[str, Any], str], None] | None = None) -> dict[str, Any]:
        """Read the checkpoint ``path`` (``check`` its extra entries first), load it; return its state."""
        state, layout, source = ckpt.read_checkpoint(path, where)
        if check is not None:
            check(state, source)
        self._load_state(state, source, layout)
        return state

    # ------------------------------------------------------------------ training loop
    #: :func:`pixyz_like.models.training.fit` with this model: ``model.fit(train_loader, epochs, ...)``.
    fit = _fit
