"""Vector quantization as in VQ-VAE (van den Oord et al., "Neural Discrete Representation Learning",
arXiv 1711.00937), with the training practice that keeps large codebooks alive.

- Nearest code by ||x||^2 - 2 x.c + ||c||^2 as one matmul per chunk of inputs (no [N, K, D] tensor;
  ||x||^2 does not change the argmin and is dropped).
- Straight-through estimator: the decoder's gradient is copied to the encoder output; or, with
  ``rotation_trick``, it reaches the encoder output through the rotation and rescaling that carry the input
  onto its code, held constant (Fifty et al., "Restructuring Vector Quantization with the Rotation Trick",
  arXiv 2410.06424; ``rotation_trick``).
- Loss: beta * ||z_e - sg[e]||^2 (commitment) and, when the codebook is learned by gradient,
  ||sg[z_e] - e||^2 (codebook). With ``ema`` the codebook follows exponential moving averages of
  the assigned encoder outputs (paper's appendix A.1): N_k <- g N_k + (1-g) n_k,
  m_k <- g m_k + (1-g) sum_i z_i, e_k = m_k / N~_k with Laplace-smoothed
  N~_k = (N_k + eps) / (sum N + K eps) * sum N.
- k-means initialisation from the first training batch; codes whose EMA usage falls below
  ``dead_threshold`` are restarted from a ring buffer of recent encoder outputs (as in Jukebox,
  arXiv 2005.00341).
- Under torch.distributed the counts and sums are all-reduced and every codebook rewrite
  (k-means, restarts) is broadcast from rank 0, so the replicas stay identical.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, code_usage_logs

# Inputs per distance chunk: bounds the [chunk, K] distance matrix to ~64 MiB of fp32.
_DIST_ELEMS = 1 << 24


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def nearest_code(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index [N] of the nearest row of ``codebook`` [K, D] for each row of ``x`` [N, D] (squared L2)."""
    c_sq = codebook.pow(2).sum(1)  # [K]
    chunk = max(1, _DIST_ELEMS // max(1, codebook.shape[0]))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], chunk):
        xs = x[s : s + chunk]
        # [n, K] = ||c||^2 - 2 x.c  (||x||^2 is constant per row)
        d = torch.addmm(c_sq, xs, codebook.t(), beta=1.0, alpha=-2.0)
        out[s : s + chunk] = d.argmin(1)
    return out


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of ``x`` [N, D]: centres [k, D] and cluster sizes [k]; empty clusters keep their seed."""
    n = x.shape[0]
    g = generator
    if n >= k:
        idx = torch.randperm(n, generator=g, device="cpu")[:k].to(x.device)
    else:
        idx = torch.randint(0, n, (k,), generator=g, device="cpu").to(x.device)
    centres = x[idx].clone()
    sizes = torch.zeros(k, device=x.device)
    for _ in range(iters):
        assign = nearest_code(x, centres)
        sizes = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        filled = sizes > 0
        centres[filled] = sums[filled] / sizes[filled, None]
    return centres, sizes


def rotation_trick(e: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Inputs ``e`` [N, D] onto codes ``q`` [N, D]: the value is ``q``, the gradient to ``e`` goes through
    lambda R, with R the rotation taking e / ||e|| to q / ||q|| and lambda = ||q|| / ||e||, both treated as
    constants. R = I - 2 w w^T + 2 q^ u^T with u = e / ||e||, q^ = q / ||q||, w = (u + q^) / ||u + q^||, as
    ``get_very_efficient_rotation`` and its caller in cfifty/rotation_trick ``src/models/vq_vae.py``
    (commit 99104924a2a61d393be30567ee8a47b350050622), eps included. The forward value is then set to ``q``
    (up to rounding, as the straight-through value), not q moved by the eps terms."""
    e_norm = e.norm(dim=1, keepdim=True)
    q_norm = q.norm(dim=1, keepdim=True).detach()
    u = (e / (e_norm + eps)).detach()
    q_hat = q.detach() / (q_norm + eps)
    w = F.normalize(u + q_hat, dim=1).detach()
    rotated = e - 2 * (e * w).sum(1, keepdim=True) * w + 2 * (e * u).sum(1, keepdim=True) * q_hat
    out = rotated * (q_norm / (e_norm + eps)).detach()
    return out + (q.detach() - out).detach()


class VectorQuantizer(nn.Module):
    """VQ of ``dim``-channel vectors: ``forward(x[..., D]) -> QuantizeOutput``."""

    def __init__(self, cfg: QuantizerConfig, dim: int):
        super().__init__()
        if cfg.codebook_size < 2:
            raise ValueError(f"quantizer.codebook_size must be >= 2, got {cfg.codebook_size}")
        if not 0.0 < cfg.decay < 1.0:
            raise ValueError(f"quantizer.decay must be in (0, 1), got {cfg.decay}")
        self.cfg = cfg
        self.dim = dim
        self.codebook_size = cfg.codebook_size
        k = cfg.codebook_size
        init = torch.randn(k, dim) / dim**0.5
        if cfg.l2_normalize:
            init = F.normalize(init, dim=1)
        if cfg.ema:
            self.register_buffer("embed", init)
            self.register_buffer("cluster_size", torch.ones(k))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embed = nn.Parameter(init)
        # EMA of vectors assigned per step, the signal for dead-code restarts.
        self.register_buffer("usage", torch.ones(k))
        self.register_buffer("initted", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("recent", torch.zeros(cfg.recent_size, dim))
        self.register_buffer("recent_count", torch.tensor(0, dtype=torch.long))

    @property
    def codebook(self) -> torch.Tensor:
        """[K, D] the codes as compared with inputs (normalised when l2_normalize)."""
        e = self.embed
        return F.normalize(e, dim=1) if self.cfg.l2_normalize else e

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """[...] long -> [..., D] codes."""
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"code indices must be in [0, {self.codebook_size}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        return F.embedding(indices, self.codebook)

    def forward(self, x: torch.Tensor) -> QuantizeOutput:
        if x.shape[-1] != self.dim:
            raise ValueError(f"quantizer expects last dim {self.dim}, got shape {tuple(x.shape)}")
        # Distances and codebook statistics in fp32 even under bf16 autocast: near-ties decide the code.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> QuantizeOutput:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.dim).float()  # [N, D]
        if self.cfg.l2_normalize:
            flat = F.normalize(flat, dim=1)
        if self.training and not bool(self.initted):
            self._kmeans_init(flat.detach())
        codebook = self.codebook
        idx = nearest_code(flat.detach(), codebook.detach())  # [N]
        q = F.embedding(idx, codebook)  # [N, D]

        commit = F.mse_loss(flat, q.detach())
        loss = self.cfg.beta * commit
        if not self.cfg.ema:
            loss = loss + F.mse_loss(q, flat.detach())
        if self.training:
            self._update(flat.detach(), idx)
        if self.cfg.rotation_trick:
            q_st = rotation_trick(flat, q)
        else:
            # Straight-through: forward value q, gradient of the identity to the encoder output.
            q_st = flat + (q - flat).detach()
        logs = code_usage_logs(idx, self.codebook_size)
        logs["commit"] = commit.detach()
        return QuantizeOutput(q_st.reshape(*lead, self.dim).to(x.dtype), idx.reshape(lead), loss, logs)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        centres, sizes = kmeans(flat, self.codebook_size, self.cfg.kmeans_iters)
        if self.cfg.l2_normalize:
            centres = F.normalize(centres, dim=1)
        centres = _broadcast(centres.contiguous())
        self._embed_data().copy_(centres)
        if self.cfg.ema:
            self.embed_sum.copy_(centres)
            self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    def _embed_data(self) -> torch.Tensor:
        return self.embed.data if isinstance(self.embed, nn.Parameter) else self.embed

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        k, g = self.codebook_size, self.cfg.decay
        counts = torch.bincount(idx, minlength=k).float()  # [K]
        sums = torch.zeros(k, self.dim, device=flat.device).index_add_(0, idx, flat)  # [K, D]
        stats = _all_reduce_sum(torch.cat([counts[:, None], sums], 1))
        counts, sums = stats[:, 0], stats[:, 1:]
        self.usage.mul_(g).add_(counts, alpha=1 - g)
        if self.cfg.ema:
            self.cluster_size.mul_(g).add_(counts, alpha=1 - g)
            self.embed_sum.mul_(g).add_(sums, alpha=1 - g)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.cfg.eps) / (n + k * self.cfg.eps) * n
            embed = self.embed_sum / smoothed[:, None]
            self.embed.copy_(F.normalize(embed, dim=1) if self.cfg.l2_normalize else embed)
        self._remember(flat)
        if self.cfg.dead_threshold > 0:
            self._restart_dead()

    @torch.no_grad()
    def _remember(self, flat: torch.Tensor) -> None:
        """Write the newest encoder outputs into the ring buffer (a random subset when there are more)."""
        m = self.recent.shape[0]
        if m == 0:
            return
        if flat.shape[0] > m:
            flat = flat[torch.randperm(flat.shape[0], device="cpu")[:m].to(flat.device)]
        n = flat.shape[0]
        start = int(self.recent_count) % m
        pos = (torch.arange(n) + start) % m
        self.recent[pos.to(flat.device)] = flat
        self.recent_count.add_(n)

    @torch.no_grad()
    def _restart_dead(self) -> None:
        dead = self.usage < self.cfg.dead_threshold  # [K] identical on every rank (usage is all-reduced)
        n_dead = int(dead.sum())
        filled = min(int(self.recent_count), self.recent.shape[0])
        if n_dead == 0 or filled == 0:
            return
        pick = torch.randint(0, filled, (n_dead,), device="cpu").to(self.recent.device)
        fresh = self.recent[pick]
        if self.cfg.l2_normalize:
            fresh = F.normalize(fresh, dim=1)
        fresh = _broadcast(fresh.contiguous())
        self._embed_data()[dead] = fresh
        if self.cfg.ema:
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
        # A restarted code gets one step's grace at the threshold before it can be restarted again.
        self.usage[dead] = max(1.0, self.cfg.dead_threshold)
