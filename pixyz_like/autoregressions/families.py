r"""Autoregressive likelihoods for binary images, 256-level images and sequences.

* :class:`AutoregressiveBernoulli`: :math:`p(x_i = 1 \mid x_{<i}) = \sigma(\ell_i)`, binary values
  (binarised MNIST, as in PixelCNN's MNIST experiments).
* :class:`AutoregressiveCategorical`: a ``K``-way softmax per subpixel (PixelRNN/PixelCNN's 256-way
  likelihood); values are the levels :math:`k / (K - 1)` in ``[0, 1]`` (what ``ToTensor`` gives).
* :class:`DiscretizedLogisticMixture`: PixelCNN++'s likelihood (Salimans et al., 2017): per pixel, a
  mixture of ``M`` logistics discretised to the ``K`` levels, the channels of one component coupled
  linearly (G's mean moves with R, B's with R and G).

Each family's ``forward`` returns the parameters of every conditional; see the shapes in each class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ParameterError, ShapeError, SupportError
from .base import AutoregressiveDistribution, _validating

__all__ = ["AutoregressiveBernoulli", "AutoregressiveCategorical", "DiscretizedLogisticMixture"]

_LN2 = math.log(2.0)


def _gumbel_argmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """A draw from ``softmax(logits / T)`` over the last dim (Gumbel-max); ``T = 0``: the argmax."""
    if temperature == 0:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
    return (logits / temperature - torch.log(-torch.log(u))).argmax(-1)


def _levels(owner: str, var: str, value: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Indices ``k`` of values ``k / (K - 1)``; anything off those levels is refused."""
    scaled = value * (n_levels - 1)
    idx = scaled.round()
    if not _validating():
        return idx.clamp(0, n_levels - 1).long()
    bad = ((scaled - idx).abs() > 1e-3) | (idx < 0) | (idx > n_levels - 1)
    if bool(bad.any()):
        example = value[bad].flatten()[0].item()
        raise SupportError(
            f"{owner}: variable {var!r} must take the {n_levels} levels k/{n_levels - 1} in [0, 1], "
            f"got e.g. {example}"
        )
    return idx.long()


class AutoregressiveBernoulli(AutoregressiveDistribution):
    r"""Binary elements, :math:`\log p(x) = \sum_i x_i \log\sigma(\ell_i) + (1-x_i)\log(1-\sigma(\ell_i))`.

    ``forward`` returns ``{"logits": (batch, C, *positions)}``. Temperature ``T`` divides the
    logits (``T = 0``: each element is 1 exactly when its logit is positive).

    >>> from pixyz_like.layers import MaskedConv2d
    >>> class PixelCNN(AutoregressiveBernoulli):
    ...     def __init__(self):
    ...         super().__init__(var=["x"], features_shape=[1, 4, 4])
    ...         self.conv = MaskedConv2d(1, 1, 3, mask_type="A")
    ...     def forward(self, x):
    ...         return {"logits": self.conv(x)}
    >>> p = PixelCNN()
    >>> x = p.sample(batch_n=2, temperature=0.5)["x"]
    >>> sorted(x.unique().tolist()) in ([0.0], [1.0], [0.0, 1.0])
    True
    >>> p.get_log_prob({"x": x}).shape
    torch.Size([2])
    """

    distribution_name = "AutoregressiveBernoulli"
    params_keys = ("logits",)

    def __init__(self, var: Sequence[str] | str = ("x",), cond_var: Sequence[str] | str = (), name: str = "p",
                 features_shape: Sequence[int] | torch.Size = torch.Size(), channels: str = "sequential") -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, channels=channels)

    def _expected_shapes(self, n: int, positions: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": (n, self.n_channels, *positions)}

    def _support(self, value: torch.Tensor) -> torch.Tensor:
        if _validating() and not bool(((value == 0) | (value == 1)).all()):
            raise SupportError(f"{self._owner()}: variable {self._var[0]!r} must be binary (0 or 1); binarise it, "
                             "e.g. with torch.bernoulli(x) or (x > 0.5).float()")
        return value

    def _log_prob_elements(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        logits = params["logits"]
        return self._support(value) * logits - F.softplus(logits)

    def _draw_at(self, params: dict[str, torch.Tensor], channel: int | None, temperature: float) -> torch.Tensor:
        logits = params["logits"] if channel is None else params["logits"][:, channel]
        if temperature == 0:
            return (logits > 0).to(logits.dtype)
        u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
        return (u < torch.sigmoid(logits / temperature)).to(logits.dtype)

    def _point_all(self, params: dict[str, torch.Tensor], value: torch.Tensor, kind: str) -> torch.Tensor:
        logits = params["logits"]
        return torch.sigmoid(logits) if kind == "mean" else (logits > 0).to(logits.dtype)


class AutoregressiveCategorical(AutoregressiveDistribution):
    r"""A ``K``-way categorical per subpixel over the levels :math:`k/(K-1)`, ``K = n_levels`` (256).

    ``forward`` returns ``{"logits": (batch, C * K, *positions)}``: channel ``c``'s ``K`` logits are
    the block ``c*K .. (c+1)*K - 1``, the output layout of a network with ``channel_groups=C``
    (:class:`~pixyz_like.layers.GatedPixelCNN`). Temperature ``T`` divides the logits (``T = 0``: the
    most probable level). ``sample_mean`` is :math:`\sum_k \frac{k}{K-1} \pi_k` per subpixel.

    >>> from pixyz_like.layers import MaskedConv2d
    >>> class Tiny(AutoregressiveCategorical):
    ...     def __init__(self):
    ...         super().__init__(var=["x"], features_shape=[1, 3, 3], n_levels=4)
    ...         self.conv = MaskedConv2d(1, 4, 3, mask_type="A")
    ...     def forward(self, x):
    ...         return {"logits": self.conv(x)}
    >>> p = Tiny()
    >>> x = p.sample(batch_n=5)["x"]
    >>> bool(((x * 3) == (x * 3).round()).all())      # values on the levels 0, 1/3, 2/3, 1
    True
    >>> p.get_log_prob({"x": torch.zeros(1, 1, 3, 3)}).shape
    torch.Size([1])
    """

    distribution_name = "AutoregressiveCategorical"
    params_keys = ("logits",)

    def __init__(self, var: Sequence[str] | str = ("x",), cond_var: Sequence[str] | str = (), name: str = "p",
                 features_shape: Sequence[int] | torch.Size = torch.Size(), n_levels: int = 256,
                 channels: str = "sequential") -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, channels=channels)
        if int(n_levels) < 2:
            raise ParameterError(f"{self._owner()}: n_levels must be at least 2, got {n_levels}")
        self.n_levels = int(n_levels)

    def _expected_shapes(self, n: int, positions: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"logits": (n, self.n_channels * self.n_levels, *positions)}

    def _split(self, logits: torch.Tensor) -> torch.Tensor:
        """``(n, C*K, *pos)`` -> ``(n, C, K, *pos)``."""
        return logits.reshape(logits.shape[0], self.n_channels, self.n_levels, *logits.shape[2:])

    def _support(self, value: torch.Tensor) -> torch.Tensor:
        return _levels(self._owner(), self._var[0], value, self.n_levels)

    def _log_prob_elements(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self._split(params["logits"]), dim=2)
        return logp.gather(2, self._support(value).unsqueeze(2)).squeeze(2)

    def _draw_at(self, params: dict[str, torch.Tensor], channel: int | None, temperature: float) -> torch.Tensor:
        logits = self._split(params["logits"])  # (n, C, K)
        if channel is not None:
            logits = logits[:, channel]
        return _gumbel_argmax(logits, temperature).to(logits.dtype) / (self.n_levels - 1)

    def _point_all(self, params: dict[str, torch.Tensor], value: torch.Tensor, kind: str) -> torch.Tensor:
        logits = self._split(params["logits"])
        if kind == "mode":
            return logits.argmax(2).to(logits.dtype) / (self.n_levels - 1)
        grid = torch.arange(self.n_levels, dtype=logits.dtype, device=logits.device) / (self.n_levels - 1)
        shape = (1, 1, self.n_levels) + (1,) * (logits.ndim - 3)
        return (torch.softmax(logits, dim=2) * grid.reshape(shape)).sum(2)


# ---------------------------------------------------------------------------------------------------
# The discretised logistic mixture. Values y in [-1, 1] on the grid y_j = 2j/(K-1) - 1, bins of
# half-width h = 1/(K-1); channel dim 1, component dim 2 (parameters (n, C, M, *positions)).


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for small and large ``d`` (Maechler, 2012)."""
    return torch.where(d < _LN2, torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def _disc_logistic_log_prob(idx: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                            n_levels: int) -> torch.Tensor:
    r"""``log P(level idx)`` of a logistic(mean, e^log_scale) discretised to ``n_levels`` levels.

    Interior levels: :math:`\sigma(a) - \sigma(b) = \sigma(a)\,\sigma(-b)\,(1 - e^{-(a-b)})` with
    :math:`a, b = (y \pm h - \mu)/s`, taken in logs so that no term cancels; the two end levels hold
    the tails. The probabilities of all levels sum to one exactly (they telescope).
    """
    h = 1.0 / (n_levels - 1)
    y = idx.to(mean.dtype) * (2 * h) - 1
    inv_s = torch.exp(-log_scale)
    a = (y + h - mean) * inv_s
    b = (y - h - mean) * inv_s
    interior = F.logsigmoid(a) + F.logsigmoid(-b) + _log1mexp(2 * h * inv_s)
    return torch.where(idx == 0, F.logsigmoid(a), torch.where(idx == n_levels - 1, F.logsigmoid(-b), interior))


def _coupled_means(loc: torch.Tensor, coeffs: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    """Channel ``c``'s mean per component: ``loc_c + sum_{c' < c} coeff_{c,c'} y_{c'}`` (pairs in order
    (1,0), (2,0), (2,1), ...). ``loc`` is ``(n, C, M, ...)``, ``y`` is ``(n, C, ...)``."""
    if coeffs is None:
        return loc
    means, j = [loc[:, 0]], 0
    for c in range(1, loc.shape[1]):
        m = loc[:, c]
        for c2 in range(c):
            m = m + coeffs[:, j] * y[:, c2].unsqueeze(1)
            j += 1
        means.append(m)
    return torch.stack(means, 1)


class DiscretizedLogisticMixture(AutoregressiveDistribution):
    r"""PixelCNN++'s discretised logistic mixture likelihood (Salimans et al., 2017), per pixel.

    For one pixel with channels :math:`y_1..y_C` mapped to :math:`[-1, 1]`,

    .. math:: p(y) = \sum_{m=1}^{M} \pi_m \prod_{c} P\big(y_c;\ \mu_{mc} + \textstyle\sum_{c'<c}
              \alpha_{m,cc'} y_{c'},\ s_{mc}\big),

    :math:`P(y; \mu, s) = \sigma(\frac{y + h - \mu}{s}) - \sigma(\frac{y - h - \mu}{s})` with the
    end levels taking the tails. Values are the levels :math:`k/(K-1)` in ``[0, 1]``; the whole pixel
    is one step (``channels="joint"``) — the channel coupling is inside the likelihood.

    ``forward`` returns ``logits`` ``(batch, M, *positions)``, ``loc`` and ``log_scale``
    ``(batch, C, M, *positions)`` and, for ``C > 1``, optionally ``coeffs``
    ``(batch, C(C-1)/2, M, *positions)``; :meth:`split_output` cuts a network's output of
    :attr:`n_output_channels` channels into them (with PixelCNN++'s ``tanh`` on the coefficients and
    ``log_scale >= -7``). Temperature ``T`` divides the mixture logits and multiplies the scales;
    ``T = 0`` and ``sample_mode`` take each channel's most probable level given the earlier
    channels (the components weighted by their posterior), ``sample_mean`` its exact mean.

    >>> from pixyz_like.layers import MaskedConv2d
    >>> class Tiny(DiscretizedLogisticMixture):
    ...     def __init__(self):
    ...         super().__init__(var=["x"], features_shape=[3, 2, 2], n_mixtures=2)
    ...         self.conv = MaskedConv2d(3, self.n_output_channels, 3, mask_type="A")
    ...     def forward(self, x):
    ...         return self.split_output(self.conv(x))
    >>> p = Tiny()
    >>> p.n_output_channels   # 2 * (1 + 2 * 3 + 3)
    20
    >>> x = p.sample(batch_n=3)["x"]
    >>> x.shape, p.get_log_prob({"x": x}).shape
    (torch.Size([3, 3, 2, 2]), torch.Size([3]))
    """

    distribution_name = "DiscretizedLogisticMixture"
    params_keys = ("logits", "loc", "log_scale", "coeffs")
    joint_channels_only = True

    def __init__(self, var: Sequence[str] | str = ("x",), cond_var: Sequence[str] | str = (), name: str = "p",
                 features_shape: Sequence[int] | torch.Size = torch.Size(), n_mixtures: int = 5,
                 n_levels: int = 256) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape, channels="joint")
        if int(n_mixtures) < 1 or int(n_levels) < 2:
            raise ParameterError(f"{self._owner()}: needs n_mixtures >= 1 and n_levels >= 2, got "
                                 f"{n_mixtures} and {n_levels}")
        self.n_mixtures, self.n_levels = int(n_mixtures), int(n_levels)

    @property
    def n_pairs(self) -> int:
        """The number of coupling coefficients per component, ``C(C-1)/2``."""
        c = self.n_channels
        return c * (c - 1) // 2

    @property
    def n_output_channels(self) -> int:
        """Channels of the network output :meth:`split_output` expects: ``M (1 + 2C + C(C-1)/2)``."""
        return self.n_mixtures * (1 + 2 * self.n_channels + self.n_pairs)

    def split_output(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cut ``(batch, n_output_channels, *positions)`` into the parameters (blocks in the order
        logits, loc, log_scale, coeffs; ``tanh`` on coeffs, ``log_scale`` clamped at -7)."""
        if out.ndim < 2 or out.shape[1] != self.n_output_channels:
            raise ShapeError(f"{self._owner()}: split_output expects (batch, {self.n_output_channels}, *positions), "
                             f"got {tuple(out.shape)}")
        n, m, c, rest = out.shape[0], self.n_mixtures, self.n_channels, out.shape[2:]
        logits, loc, log_scale, coeffs = out.split([m, c * m, c * m, self.n_pairs * m], dim=1)
        params = {"logits": logits, "loc": loc.reshape(n, c, m, *rest),
                  "log_scale": log_scale.reshape(n, c, m, *rest).clamp(min=-7.0)}
        if self.n_pairs:
            params["coeffs"] = torch.tanh(coeffs.reshape(n, self.n_pairs, m, *rest))
        return params

    def _keys_ok(self, keys: set[str]) -> bool:
        base = {"logits", "loc", "log_scale"}
        return keys == base or (self.n_pairs > 0 and keys == base | {"coeffs"})

    def _expected_shapes(self, n: int, positions: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        m, c = self.n_mixtures, self.n_channels
        return {"logits": (n, m, *positions), "loc": (n, c, m, *positions), "log_scale": (n, c, m, *positions),
                "coeffs": (n, self.n_pairs, m, *positions)}

    def _support(self, value: torch.Tensor) -> torch.Tensor:
        return _levels(self._owner(), self._var[0], value, self.n_levels)

    def _grid(self, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return idx.to(dtype) * (2.0 / (self.n_levels - 1)) - 1

    def _component_log_probs(self, params: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """``log P_m(y_c | y_{<c})`` for every channel and component: ``(n, C, M, *positions)``."""
        mean = _coupled_means(params["loc"], params.get("coeffs"), self._grid(idx, params["loc"].dtype))
        return _disc_logistic_log_prob(idx.unsqueeze(2), mean, params["log_scale"], self.n_levels)

    def _log_prob_elements(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        lp = self._component_log_probs(params, self._support(value))
        return torch.logsumexp(torch.log_softmax(params["logits"], dim=1) + lp.sum(1), dim=1)

    # ---------------------------------------------------------------- points and draws
    def _channel_point(
        self, log_w: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, kind: str
    ) -> torch.Tensor:
        """Channel's point under the mixture with log-weights ``log_w`` (all ``(n, M, ...)``): its mean
        in ``[-1, 1]`` or its most probable level index."""
        log_w = torch.log_softmax(log_w, dim=1)
        k, h = self.n_levels, 1.0 / (self.n_levels - 1)
        if kind == "mean":  # E[y] = y_0 + sum_j (y_j - y_{j-1}) P(Y >= y_j), P(Y >= y_j) = sigma((mu - y_j + h)/s)
            inv_s = torch.exp(-log_scale)
            tail = torch.zeros_like(mean)
            for j in range(1, k):
                tail = tail + torch.sigmoid((mean - (2 * j * h - 1 - h)) * inv_s)
            return ((-1 + 2 * h * tail) * log_w.exp()).sum(1)

        def level_log_prob(j: int) -> torch.Tensor:
            idx = torch.full(mean.shape, j, dtype=torch.long, device=mean.device)
            return torch.logsumexp(log_w + _disc_logistic_log_prob(idx, mean, log_scale, k), dim=1)

        best_lp = level_log_prob(0)
        best = torch.zeros_like(best_lp, dtype=torch.long)
        for j in range(1, k):
            lp = level_log_prob(j)
            better = lp > best_lp
            best, best_lp = torch.where(better, j, best), torch.where(better, lp, best_lp)
        return best

    def _points(self, params: dict[str, torch.Tensor], idx: torch.Tensor | None, kind: str) -> torch.Tensor:
        """Channel by channel, each channel's mean or mode (in ``[0, 1]``) given the earlier channels:
        their data levels ``idx`` (teacher forcing) or, with ``idx=None``, the modes chosen so far."""
        loc, log_scale, coeffs = params["loc"], params["log_scale"], params.get("coeffs")
        log_w = torch.log_softmax(params["logits"], dim=1)
        known = idx if idx is not None else torch.zeros((loc.shape[0], loc.shape[1], *loc.shape[3:]),
                                                        dtype=torch.long, device=loc.device)
        out = []
        for ch in range(loc.shape[1]):
            mean = _coupled_means(loc, coeffs, self._grid(known, loc.dtype))[:, ch]
            point = self._channel_point(log_w, mean, log_scale[:, ch], kind)
            if kind == "mean":
                out.append((point + 1) / 2)
            else:
                out.append(point.to(loc.dtype) / (self.n_levels - 1))
                if idx is None:
                    known[:, ch] = point
            # the posterior over components after seeing this channel's level
            log_w = log_w + _disc_logistic_log_prob(known[:, ch].unsqueeze(1), mean, log_scale[:, ch], self.n_levels)
        return torch.stack(out, 1)

    def _point_all(self, params: dict[str, torch.Tensor], value: torch.Tensor, kind: str) -> torch.Tensor:
        return self._points(params, self._support(value), kind)

    def _draw_at(self, params: dict[str, torch.Tensor], channel: int | None, temperature: float) -> torch.Tensor:
        if temperature == 0:
            return self._points(params, None, "mode")
        loc, log_scale, coeffs = params["loc"], params["log_scale"], params.get("coeffs")
        comp = _gumbel_argmax(params["logits"], temperature).unsqueeze(1)  # (n, 1)
        n, c = loc.shape[:2]
        idx = torch.zeros(n, c, dtype=torch.long, device=loc.device)
        y = torch.zeros(n, c, dtype=loc.dtype, device=loc.device)
        j = 0
        for ch in range(c):
            m = loc[:, ch].gather(1, comp).squeeze(1)
            if coeffs is not None:  # optional: without them the channels are not coupled
                for c2 in range(ch):
                    m = m + coeffs[:, j].gather(1, comp).squeeze(1) * y[:, c2]
                    j += 1
            s = torch.exp(log_scale[:, ch].gather(1, comp).squeeze(1)) * temperature
            u = torch.rand(n, dtype=loc.dtype, device=loc.device)
            cont = m + s * (torch.log(u) - torch.log1p(-u))  # a logistic draw, then its level
            idx[:, ch] = ((cont.clamp(-1, 1) + 1) * ((self.n_levels - 1) / 2)).round().long()
            y[:, ch] = self._grid(idx[:, ch], loc.dtype)
        return idx.to(loc.dtype) / (self.n_levels - 1)
