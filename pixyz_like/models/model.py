"""The :class:`Model`: a loss, the distributions it trains, an optimizer and a device."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn, optim
from torch.nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm

from ..distributions.distributions import Distribution
from ..errors import CheckpointError, NonFiniteGradientError, NonFiniteLossError, OptionError, ShapeError
from ..losses.losses import Loss
from ..utils import check_options, tolist
from . import _checkpoint as ckpt

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


def _non_finite_entries(tensors: Mapping[str, Any]) -> list[str]:
    """``name (n non-finite of N, first at index i)`` for each floating tensor holding NaN or inf."""
    found = []
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            bad = ~torch.isfinite(t.detach())
            if bool(bad.any()):
                first = tuple(int(i) for i in bad.nonzero()[0]) if t.ndim else ()
                found.append(f"{name!r} ({int(bad.sum())} non-finite of {t.numel()}, first at index {first})")
    return found


class Model:
    r"""Trains a loss with respect to the parameters of the given distributions.

    Args:
        loss: the training loss (must evaluate to a scalar, e.g. end with ``.mean()``).
        test_loss: the loss ``test`` reports (defaults to ``loss``).
        distributions: the distributions (or any ``nn.Module``) whose parameters are trained; one whose
            parameters the loss never uses is reported with a warning (it would train nothing).
        optimizer: an optimizer class; ``optimizer_params`` are its keyword arguments.
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
        loss,
        test_loss=None,
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
        self.loss_cls = None
        self.test_loss_cls = None
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
        self.optimizer = optimizer(params, **dict(optimizer_params or {}))
        self.retain_graph = retain_graph

    def set_loss(self, loss, test_loss=None) -> None:
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

    def _check_options(self, where: str, loss, options: Mapping[str, Any]) -> None:
        if loss is self.loss_cls:
            valid = self._train_options
        elif loss is self.test_loss_cls:
            valid = self._test_options
        else:
            valid = _loss_options(loss)
        check_options(where, options, valid)

    def train(self, train_x_dict: Mapping[str, Any] | None = None, **options: Any):
        """One optimisation step on a batch; returns the loss, detached (and the terms if asked).

        ``options`` are passed to the loss's ``eval`` (e.g. ``batch_n=8`` for a model with no inputs);
        ``return_terms=True`` returns ``(loss, {term: value})`` with each named term's batch mean.

        Raises:
            NonFiniteLossError: the loss is NaN or infinite (the message names the inputs and terms
                that are not finite); the step is not taken.
            NonFiniteGradientError: a gradient is NaN or infinite; the step is not taken.
            ShapeError: an empty batch.
        """
        self._check_options("Model.train()", self.loss_cls, options)
        return_terms = options.pop("return_terms", False)
        x_dict = self._to_device(train_x_dict, "Model.train()")
        self.distributions.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = self._train_loss(x_dict, options, return_terms)
        loss.backward(retain_graph=self.retain_graph)
        norm = self._clip_gradients()
        self._check_step(loss, norm, x_dict, terms)
        self.optimizer.step()
        loss = loss.detach()
        return (loss, terms) if return_terms else loss

    def _train_loss(
        self, x_dict: dict[str, Any], options: Mapping[str, Any], return_terms: bool, loss_fn=None
    ):
        """Evaluate the training loss (through ``loss_fn``, e.g. a compiled one); check it is a scalar."""
        if loss_fn is None:
            result = self.loss_cls.eval(x_dict, return_terms=return_terms, **options)
        else:
            result = loss_fn(x_dict)
        loss, terms = result if return_terms else (result, None)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ShapeError(
                f"Model.train(): the loss {self.loss_cls} evaluated to shape {shape}; a training loss must be "
                "a scalar: end the formula with .mean() or .sum()"
            )
        return loss, terms

    def _stepped_grads(self) -> list[torch.Tensor]:
        """The gradients the optimizer would apply (from its parameter lists: no module traversal)."""
        return [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def _clip_gradients(self) -> torch.Tensor | None:
        """Clip as configured; return the gradients' total norm when clipping by norm computed it."""
        norm = None
        if self.clip_norm is not None:
            norm = clip_grad_norm_(self.distributions.parameters(), self.clip_norm)
        if self.clip_value is not None:
            clip_grad_value_(self.distributions.parameters(), self.clip_value)
        return norm

    def _check_step(self, loss: torch.Tensor | None, norm: torch.Tensor | None, x_dict: Mapping[str, Any],
                    terms: Mapping[str, Any] | None = None, where: str = "Model.train()") -> None:
        """Refuse the step (before the optimizer sees it) if the loss or a gradient is not finite.

        One fused reduction (the gradients' total norm, reused from norm clipping when it ran) and
        one host synchronisation per step; the details are gathered only when the check fails.
        """
        if self._all_finite(loss, norm):
            return
        if loss is not None and not bool(torch.isfinite(loss.detach())):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(self._non_finite_loss_message(where, loss, x_dict, terms))
        bad = [n for n, p in self.distributions.named_parameters()
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if not bad:
            return  # only the norm overflowed: every gradient is finite
        self.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteGradientError(
            f"{where}: the loss is finite but the gradients of {bad[:8]} are not (NaN or infinite); the optimizer "
            "step was not taken, the parameters and the optimizer's state are unchanged"
        )

    def _all_finite(self, loss: torch.Tensor | None, norm: torch.Tensor | None) -> bool:
        """Whether the loss and every gradient are finite: one fused norm per gradient (or the clipping's
        total norm), stacked with the loss into one tensor, read by one ``bool``."""
        if norm is not None:
            parts = [norm.detach()]
        else:
            grads = self._stepped_grads()
            same_device = len({g.device for g in grads}) == 1 and not any(g.is_sparse for g in grads)
            parts = list(torch._foreach_norm(grads)) if same_device else [get_total_norm(grads)]
        if loss is not None:
            parts.append(loss.detach().to(parts[0].device) if parts else loss.detach())
        return not parts or bool(torch.isfinite(torch.stack(parts)).all())

    def _non_finite_loss_message(self, where: str, loss: torch.Tensor, x_dict: Mapping[str, Any],
                                 terms: Mapping[str, Any] | None) -> str:
        detail = []
        inputs = _non_finite_entries(x_dict)
        if inputs:
            detail.append(f"inputs {', '.join(inputs)}")
        bad_terms = [k for k, v in (terms or {}).items() if not math.isfinite(float(v))]
        if bad_terms:
            detail.append(f"terms {bad_terms}")
        weights = _non_finite_entries(dict(self.distributions.named_parameters()))
        if weights:
            detail.append(f"parameters {', '.join(weights[:4])}")
        found = f" (not finite: {'; '.join(detail)})" if detail else ""
        return (
            f"{where}: the loss {self.loss_cls} is {float(loss.detach())}{found}; the optimizer step was not "
            "taken, the parameters and the optimizer's state are unchanged"
        )

    def test(self, test_x_dict: Mapping[str, Any] | None = None, **options: Any):
        """Evaluate the test loss without gradients, networks in eval mode; returns it detached.

        ``options`` are passed to the test loss's ``eval`` (e.g. ``batch_n=8``, ``return_terms=True``).
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
        problems = [p for p in problems if p]
        if problems:
            raise CheckpointError(
                f"{source} belongs to another model ({type(self).__name__}): " + " | ".join(problems)
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
        state, layout, source = ckpt.read_checkpoint(path, "Model.load()")
        self._load_state(state, source, layout)

    # ------------------------------------------------------------------ training loop
    def fit(
        self,
        train_loader,
        epochs: int = 1,
        test_loader=None,
        *,
        keys: Sequence[str | None] | None = None,
        schedules: Mapping[str, Any] | None = None,
        callbacks: Sequence[Any] = (),
        log_dir: str | None = None,
        progress: bool = True,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: str | os.PathLike | None = None,
        max_steps: int | None = None,
        compile: bool | Mapping[str, Any] = False,
        amp: bool | str = False,
        accumulate: int = 1,
        options: Mapping[str, Any] | None = None,
    ) -> list[dict[str, float]]:
        r"""Train for ``epochs`` epochs over ``train_loader``; return one dict of epoch means per epoch.

        Each optimizer step minimises the mean loss over ``accumulate`` batches (and, under
        ``torchrun``, over all processes):
        :math:`\theta \leftarrow \mathrm{step}\big(\nabla_\theta \frac{1}{A W}\sum_{a,r} L(x_{a,r})\big)`.

        Args:
            train_loader: an iterable of batches: dicts ``{name: tensor}``, or tuples named by ``keys``.
            epochs: the total number of epochs (a resumed run continues up to it).
            test_loader: batches for the test loss, evaluated after each epoch.
            keys: names of the elements of tuple batches, ``None`` to drop one (e.g. ``("x", None)``
                for torchvision's ``(image, label)``).
            schedules: ``{name: schedule(step) -> float}``: each value enters the input dict under its
                name at every step, e.g. ``{"beta": linear_warmup(0, 1, 1000)}`` for a loss using
                ``Parameter("beta")`` (see :mod:`pixyz_like.losses.schedules`).
            callbacks: :class:`~pixyz_like.models.training.Callback` objects (``on_step_end``,
                ``on_epoch_end``...).
            log_dir: write TensorBoard logs there (a
                :class:`~pixyz_like.models.training.TensorBoardLogger`; add one to ``callbacks``
                yourself for image grids).
            progress: show a tqdm progress bar.
            checkpoint: path of the checkpoint written (atomically) after each epoch, every
                ``checkpoint_every`` steps and when training stops early.
            checkpoint_every: also write the checkpoint every this many optimizer steps.
            resume: a checkpoint written by ``fit`` to continue from exactly: parameters, optimizers,
                counters, the epoch's shuffle order and every random state.
            max_steps: stop after this many optimizer steps in all (counted across resumes).
            compile: ``torch.compile`` the loss evaluation (``True``, or a dict of ``torch.compile``
                arguments); falls back to eager with a warning where unsupported.
            amp: mixed precision on CUDA: ``True`` (bfloat16 where supported, else float16 with
                gradient scaling), ``"bf16"`` or ``"fp16"``. On CPU, ``amp=True`` raises an error
                rather than silently doing nothing; ``amp="bf16"`` opts in to CPU bfloat16 autocast.
            accumulate: average the gradients of this many batches before each optimizer step.
            options: options passed to the loss at each evaluation (e.g. ``{"batch_n": 8}``).

        Raises:
            MissingVariableError: a batch lacks a variable the loss needs (the message names it).
            NonFiniteLossError: the loss became NaN/inf; the message names the step and the term.
            NonFiniteGradientError: a gradient became NaN/inf (the step is not taken either).
            CheckpointError: ``resume`` is unreadable, corrupted, or not a ``fit`` checkpoint of
                this model.
            OptionError: a count that means nothing (``max_steps=-1``, ``accumulate=0``...).

        A subclass with its own ``train`` (e.g. a GAN stepping a critic) is trained through that
        ``train``; ``accumulate``, ``amp`` and ``compile`` then do not apply. Under ``torchrun`` see
        :mod:`pixyz_like.models.distributed`.

        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
        >>> p.loc = torch.nn.Parameter(p.loc.clone())
        >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1})
        >>> loader = DataLoader(TensorDataset(torch.full((64, 1), 2.0)), batch_size=16)
        >>> history = model.fit(loader, epochs=20, keys=("x",), progress=False)
        >>> round(p.loc.item(), 1), len(history)
        (2.0, 20)
        """
        from .training import fit

        return fit(
            self, train_loader, epochs, test_loader, keys=keys, schedules=schedules, callbacks=callbacks,
            log_dir=log_dir, progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            resume=resume, max_steps=max_steps, compile=compile, amp=amp, accumulate=accumulate,
            options=options,
        )
