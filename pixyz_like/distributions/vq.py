r"""Vector quantisation (VQ-VAE, van den Oord et al., "Neural Discrete Representation Learning", 2017).

:class:`VectorQuantizer` is the deterministic distribution :math:`q(z_q|z_e) = \delta(z_q - e_{k(z_e)})`
with :math:`k(z_e) = \arg\min_k \|z_e - e_k\|^2` over a codebook :math:`e_1, \dots, e_K`. Multiplied
with a deterministic encoder :math:`q(z_e|x)` it gives the VQ-VAE posterior; its sample carries the
*straight-through* gradient :math:`z_q = z_e + \mathrm{sg}[e_k - z_e]`, so the decoder's gradient
reaches the encoder as if no quantisation happened. The codebook is learnt either by the codebook
loss :math:`\|\mathrm{sg}[z_e] - e\|^2` (:class:`~pixyz_like.losses.CodebookLoss`) or, with
``ema=True``, by exponential moving averages of the vectors assigned to each code (the paper's
appendix A.1, an online k-means). The commitment loss :math:`\beta\|z_e - \mathrm{sg}[e]\|^2`
(:class:`~pixyz_like.losses.CommitmentLoss`) keeps the encoder close to its codes in both cases.

State updated by training: in training mode and with gradients enabled (what ``Model.train`` and
``Model.fit`` do; ``Model.test`` evaluates without gradients, so it changes nothing), each call
updates the running code usage (for :meth:`VectorQuantizer.perplexity`) and, with ``ema=True``, the
moving averages and the codebook. They are buffers: saved with the model's state, restored on resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ParameterError, ShapeError
from .special import Deterministic

__all__ = ["VectorQuantizer"]


class VectorQuantizer(Deterministic):
    r"""The nearest-codebook-vector quantiser :math:`q(z_q|z_e)`, a deterministic distribution.

    Args:
        num_embeddings: the number of codes :math:`K`.
        embedding_dim: the dimension :math:`D` of each code (and of :math:`z_e`'s channel dimension).
        var: the quantised variable (``["z_q"]``).
        cond_var: the encoder's output (``["z_e"]``).
        name: the distribution's name.
        channel_dim: which dimension of :math:`z_e` holds the :math:`D` components: ``-1`` (channel
            last, ``(batch, ..., D)``) or ``1`` for a convolutional encoder's ``(batch, D, H, W)``.
        ema: learn the codebook by moving averages (no gradient reaches it) instead of the codebook loss.
        decay: the moving averages' decay :math:`\gamma` (``ema=True``) and the usage average's.
        epsilon: added to the averaged counts before dividing (``ema=True``).
        debias: divide the moving averages by :math:`1 - \gamma^t` (Adam's zero-bias correction), so
            early codes are not pulled toward the zero the averages start from.

    Unused codes keep their vectors (an average over no vector is not taken). The codebook starts
    from :math:`\mathcal N(0, 1)` draws; :meth:`init_from` sets it from data (e.g. a first batch of
    encoder outputs), which avoids dead codes.

    >>> vq = VectorQuantizer(8, 2, name="q")
    >>> print(vq.prob_text, "|", vq.distribution_name)
    q(z_{q}|z_{e}) | Vector quantiser
    >>> z_e = torch.randn(5, 2, requires_grad=True)
    >>> z_q = vq.sample({"z_e": z_e})["z_q"]
    >>> e, k = vq.quantize(z_e)
    >>> torch.equal(z_q, e.detach()), k.shape              # the value is the nearest code ...
    (True, torch.Size([5]))
    >>> z_q.sum().backward(); torch.equal(z_e.grad, torch.ones(5, 2))   # ... the gradient straight through
    True
    """

    distribution_name = "Vector quantiser"
    has_reparam = True
    # A learnt nn.Parameter, or a buffer moved by the moving averages (ema=True).
    codebook: torch.Tensor
    ema_count: torch.Tensor
    ema_sum: torch.Tensor
    usage: torch.Tensor
    steps: torch.Tensor

    def __init__(self, num_embeddings: int, embedding_dim: int, var: Sequence[str] | str = ("z_q",),
                 cond_var: Sequence[str] | str = ("z_e",), name: str = "q", channel_dim: int = -1,
                 ema: bool = False, decay: float = 0.99, epsilon: float = 1e-5, debias: bool = True) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name)
        owner = self._owner()
        for what, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ParameterError(f"{owner}: {what} must be a positive integer, got {n!r}")
        if len(self._var) != 1 or len(self._cond_var) != 1:
            raise ShapeError(f"{owner}: a vector quantiser maps one variable to one, got var={self._var}, "
                             f"cond_var={self._cond_var}")
        if channel_dim not in (-1, 1):
            raise ParameterError(f"{owner}: channel_dim must be -1 (channel last) or 1 (channel first), "
                                 f"got {channel_dim!r}")
        if not 0.0 < decay < 1.0:
            raise ParameterError(f"{owner}: decay must lie in (0, 1), got {decay!r}")
        if not epsilon >= 0:
            raise ParameterError(f"{owner}: epsilon must be non-negative, got {epsilon!r}")
        self.num_embeddings, self.embedding_dim, self.channel_dim = num_embeddings, embedding_dim, channel_dim
        self.ema, self.decay, self.epsilon, self.debias = bool(ema), float(decay), float(epsilon), bool(debias)
        init = torch.randn(num_embeddings, embedding_dim)
        if self.ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.zeros(num_embeddings))
            self.register_buffer("ema_sum", torch.zeros(num_embeddings, embedding_dim))
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("usage", torch.zeros(num_embeddings))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ layout
    def _flat(self, z_e: torch.Tensor) -> torch.Tensor:
        """``z_e`` as ``(M, D)`` rows, ``M`` the number of vectors quantised."""
        if not isinstance(z_e, torch.Tensor):
            raise TypeError(f"{self._owner()}: {self._cond_var[0]!r} must be a tensor, got {type(z_e).__name__}")
        d = self.channel_dim
        if z_e.ndim < 2 or z_e.shape[d] != self.embedding_dim:
            where = "last" if d == -1 else "second"
            raise ShapeError(
                f"{self._owner()}: variable {self._cond_var[0]!r} has shape {tuple(z_e.shape)}; its {where} "
                f"dimension (channel_dim={d}) must hold the embedding_dim={self.embedding_dim} components"
            )
        return z_e.movedim(d, -1).reshape(-1, self.embedding_dim)

    def _unflat(self, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(M, D)`` rows back to the layout of ``like``."""
        moved = like.movedim(self.channel_dim, -1).shape
        return rows.reshape(moved).movedim(-1, self.channel_dim)

    def _index_shape(self, z_e: torch.Tensor) -> torch.Size:
        return z_e.movedim(self.channel_dim, -1).shape[:-1]

    # ------------------------------------------------------------------ quantisation
    def _nearest(self, rows: torch.Tensor) -> torch.Tensor:
        book = self.codebook.detach().to(rows.dtype)
        # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; the first term is the same for every code.
        dist = (book * book).sum(1) - 2.0 * rows.detach() @ book.t()
        return dist.argmin(1)

    def encode(self, z_e: torch.Tensor) -> torch.Tensor:
        """The index of the nearest code of each vector: ``z_e``'s shape without the channel dimension.

        >>> vq = VectorQuantizer(2, 1)
        >>> vq.codebook.data = torch.tensor([[0.0], [10.0]])
        >>> vq.encode(torch.tensor([[1.0], [9.0], [-3.0]])).tolist()
        [0, 1, 0]
        """
        return self._nearest(self._flat(z_e)).reshape(self._index_shape(z_e))

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """The code vectors of ``indices``, with the channel dimension put back where ``z_e`` has it.

        >>> vq = VectorQuantizer(3, 2, channel_dim=1)
        >>> vq.decode(torch.zeros(4, 7, 7, dtype=torch.long)).shape
        torch.Size([4, 2, 7, 7])
        """
        if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.long, torch.int, torch.int16,
                                                                           torch.int8, torch.uint8):
            raise TypeError(f"{self._owner()}: decode takes integer code indices, got "
                            f"{indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_embeddings):
            raise ParameterError(f"{self._owner()}: code indices must lie in [0, {self.num_embeddings}), got "
                                 f"[{int(indices.min())}, {int(indices.max())}]")
        vectors = self.codebook[indices.long()]
        return vectors if self.channel_dim == -1 else vectors.movedim(-1, 1)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(e, k)``: the nearest code vectors (in ``z_e``'s layout, differentiable with respect to a
        learnt codebook, not to ``z_e``) and their indices. Changes no state.

        >>> vq = VectorQuantizer(4, 3)
        >>> e, k = vq.quantize(torch.randn(2, 5, 3))
        >>> e.shape, k.shape
        (torch.Size([2, 5, 3]), torch.Size([2, 5]))
        """
        rows = self._flat(z_e)
        k = self._nearest(rows)
        return self._unflat(self.codebook[k].to(z_e.dtype), z_e), k.reshape(self._index_shape(z_e))

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        z_e = inputs[self._cond_var[0]]
        rows = self._flat(z_e)
        k = self._nearest(rows)
        e = self._unflat(self.codebook.detach()[k].to(z_e.dtype), z_e)
        if self.training and torch.is_grad_enabled():
            self._update(rows.detach(), k)
        # Straight-through: exactly the value of e (z_e - sg[z_e] is 0), the gradient of z_e.
        return {self._var[0]: e + (z_e - z_e.detach())}

    # ------------------------------------------------------------------ state
    @torch.no_grad()
    def _update(self, rows: torch.Tensor, k: torch.Tensor) -> None:
        g = self.decay
        counts = torch.bincount(k, minlength=self.num_embeddings).to(self.usage.dtype)
        self.steps += 1
        self.usage.mul_(g).add_(counts / max(rows.shape[0], 1), alpha=1 - g)
        if not self.ema:
            return
        sums = torch.zeros_like(self.ema_sum).index_add_(0, k, rows.to(self.ema_sum.dtype))
        self.ema_count.mul_(g).add_(counts, alpha=1 - g)
        self.ema_sum.mul_(g).add_(sums, alpha=1 - g)
        scale = 1.0 / (1.0 - g ** int(self.steps)) if self.debias else 1.0
        seen = self.ema_count > 0
        centres = (self.ema_sum * scale) / (self.ema_count * scale + self.epsilon).unsqueeze(1)
        self.codebook.copy_(torch.where(seen.unsqueeze(1), centres, self.codebook))

    @torch.no_grad()
    def init_from(self, z_e: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to ``num_embeddings`` vectors of ``z_e`` drawn without replacement (with
        replacement when there are fewer), and reset the moving averages and the usage.

        >>> vq = VectorQuantizer(2, 2)
        >>> vq.init_from(torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
        >>> sorted(vq.codebook[:, 0].tolist())
        [1.0, 2.0]
        """
        rows = self._flat(z_e).detach()
        n = rows.shape[0]
        if n >= self.num_embeddings:
            pick = torch.randperm(n, generator=generator)[: self.num_embeddings]
        else:
            pick = torch.randint(n, (self.num_embeddings,), generator=generator)
        self.codebook.copy_(rows[pick.to(rows.device)].to(self.codebook.dtype))
        self.usage.zero_()
        self.steps.zero_()
        if self.ema:
            self.ema_count.zero_()
            self.ema_sum.zero_()

    def code_usage(self, z_e: torch.Tensor | None = None) -> torch.Tensor:
        """The fraction of vectors assigned to each code: of ``z_e`` when given, else the running
        average over training (de-biased; zeros before the first training call).

        >>> vq = VectorQuantizer(2, 1)
        >>> vq.codebook.data = torch.tensor([[0.0], [10.0]])
        >>> vq.code_usage(torch.tensor([[1.0], [2.0], [9.0], [0.0]])).tolist()
        [0.75, 0.25]
        """
        if z_e is not None:
            k = self._nearest(self._flat(z_e))
            return torch.bincount(k, minlength=self.num_embeddings).to(self.usage.dtype) / max(k.numel(), 1)
        t = int(self.steps)
        return self.usage / (1.0 - self.decay ** t) if t else torch.zeros_like(self.usage)

    def perplexity(self, z_e: torch.Tensor | None = None) -> torch.Tensor:
        r"""The codebook perplexity :math:`\exp(-\sum_k u_k \log u_k)` of the usage :math:`u`
        (:meth:`code_usage`): the number of codes in effective use, between 1 and ``num_embeddings``.

        >>> vq = VectorQuantizer(4, 1)
        >>> vq.init_from(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
        >>> round(float(vq.perplexity(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))), 4)
        4.0
        """
        u = self.code_usage(z_e)
        total = u.sum()
        if float(total) <= 0:
            return torch.ones((), dtype=u.dtype, device=u.device)
        u = u / total
        return torch.exp(-(u * torch.log(u.clamp_min(1e-30))).sum())

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}\nnum_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
                f"channel_dim={self.channel_dim}, ema={self.ema}, decay={self.decay}")
