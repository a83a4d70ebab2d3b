"""Gaussian RBF layer with learnable centres and widths, and its data-dependent initialization."""
from __future__ import annotations

import torch
from torch import nn

KMEANS_ITERATIONS = 30
# k-means runs on a random subset beyond this many samples: more barely moves the centres.
KMEANS_MAX_SAMPLES = 20000


class RBFLayer(nn.Module):
    """Gaussian units over the flattened input: `(N, *shape) -> (N, centers)`,
    unit k answering `exp(-|x - c_k|^2 / (2 sigma_k^2))`; `log sigma` is what is learned."""

    def __init__(self, in_features: int, centers: int, init_centers: str = "kmeans"):
        super().__init__()
        self.init_centers = init_centers
        self.centers = nn.Parameter(torch.randn(centers, in_features))
        self.log_widths = nn.Parameter(torch.zeros(centers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        # |x - c|^2 expanded: unlike cdist's, its gradient is finite at zero distance.
        d2 = ((x * x).sum(1, keepdim=True) - 2 * x @ self.centers.T
              + (self.centers * self.centers).sum(1)).clamp_min(0)
        return torch.exp(-d2 / (2 * torch.exp(2 * self.log_widths)))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Centres by k-means ("kmeans") or on random samples ("random") of the normalized
        training inputs `x`; widths from the samples nearest each centre (`rms_widths`)."""
        x = x.flatten(1).to(self.centers)
        if len(x) > KMEANS_MAX_SAMPLES:
            x = x[torch.randperm(len(x), device=x.device)[:KMEANS_MAX_SAMPLES]]
        k = len(self.centers)
        if self.init_centers == "kmeans":
            centers = kmeans(x, k)
        elif k <= len(x):
            centers = x[torch.randperm(len(x), device=x.device)[:k]]
        else:
            centers = x[torch.randint(len(x), (k,), device=x.device)]
        self.centers.copy_(centers)
        self.log_widths.copy_(torch.log(rms_widths(x, centers)))


def kmeans(x: torch.Tensor, k: int, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding (torch's global RNG): centres `(k, D)`."""
    chosen = [x[torch.randint(len(x), ()).item()]]
    d2 = ((x - chosen[0]) ** 2).sum(1)
    for _ in range(1, k):
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)  # all points on the centres
        chosen.append(x[torch.multinomial(weights, 1).item()])
        d2 = torch.minimum(d2, ((x - chosen[-1]) ** 2).sum(1))
    c = torch.stack(chosen)
    for _ in range(iterations):
        assign = torch.cdist(x, c).argmin(1)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        # An empty cluster keeps its centre rather than collapsing to the origin.
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
    return c


def rms_widths(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Per centre, the RMS distance of the samples nearest to it. Centres with fewer than two
    such samples (or all on the centre) take the median of the others, or 1 if none has."""
    dist = torch.cdist(x, centers)
    assign = dist.argmin(1)
    k = len(centers)
    counts = torch.bincount(assign, minlength=k)
    nearest = dist.gather(1, assign[:, None])[:, 0]
    sq = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, assign, nearest ** 2)
    rms = (sq / counts.clamp_min(1)).sqrt()
    ok = (counts >= 2) & (rms > 1e-3)
    fallback = rms[ok].median() if ok.any() else torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(ok, rms, fallback)
