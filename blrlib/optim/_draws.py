"""The draws eps of theta = m + eps / sqrt(s): Gaussian, or random signs at a sixth of the cost.

    opt = blrlib.optim.VON(model.parameters(), n_data=N, draws="rademacher")  # eps_j = +-1

VON estimates E_q[grad] by g = grad(theta) and E_q[diag Hessian] by Price's identity in
Hessian-free form, h_hat = (theta - m) s g = eps sqrt(s) g (Khan & Rue 2023, App D), from one
draw theta = m + eps / sqrt(s) per step. With ``draws="gaussian"`` (the default) eps ~ N(0, I)
is q's own draw. A CPU makes Gaussian numbers slowly (torch's generator costs about as much
per number as the rest of a small network's step per weight), so ``draws="rademacher"`` takes
eps_j = +1 or -1 with probability 1/2 each, 32 of them from one 32-bit random word
(:func:`rademacher_`).

**The estimate's mean.** Let the eps_j be independent with E[eps_j] = 0 and E[eps_j^2] = 1
(both schemes), independent of m and s. For a quadratic loss with Hessian H,
g(theta) = g(m) + H S^{-1/2} eps (S = diag(s)), so

    h_hat_j = eps_j sqrt(s_j) g_j(m) + sum_k H_jk sqrt(s_j / s_k) eps_j eps_k,
    E[h_hat_j] = 0 + sum_k H_jk sqrt(s_j / s_k) delta_jk = H_jj,

the Hessian diagonal, and E[g(theta)] = g(m) = E_q[g], whichever of the two distributions eps
has. For any other loss, Gaussian eps give E[h_hat] = E_q[diag Hessian] exactly (Stein's lemma,
E[eps f(eps)] = E[f'(eps)]); random signs give the mean over the other coordinates of the secant
slope (g_j(m + e_j / sqrt(s_j)) - g_j(m - e_j / sqrt(s_j))) sqrt(s_j) / 2, which by Taylor's
theorem differs from E_q[diag Hessian]_j by d_j^4 loss / (3 s_j) + O(s^-2) (E[eps^4] is 1
instead of 3), and E[g(theta)] differs from E_q[g] at order s^-2. So with random signs the
step is the BLR's up to those terms: theta runs over the corners of a box with q's mean and
variances, not over q. Predictions (``sampled_params(train=False)``, ``optim.predict``) always
draw from q.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

__all__ = ["Draws", "rademacher_"]


class Draws(str, Enum):
    """The training draws eps: ``gaussian`` (N(0, I), q's own) or ``rademacher`` (+-1)."""

    GAUSSIAN = "gaussian"
    RADEMACHER = "rademacher"


_BITS = {
    torch.float32: (torch.int32, 32, 0x3F800000),
    torch.float64: (torch.int64, 64, 0x3FF0000000000000),
}
_SHIFTS: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def rademacher_(out: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``out`` with independent +1 and -1, each with probability 1/2; returns ``out``.

    For a contiguous float32 (float64) tensor whose size is a multiple of 32 (64), each entry
    is one bit of a uniform random word: the bit is moved to the sign bit of the float 1.0
    (three integer passes, no float arithmetic); otherwise ``bernoulli_(0.5)``, then 2 z - 1.

    Args:
        out: the tensor to fill.
        generator: the random generator (torch's default when None).
    """
    spec = _BITS.get(out.dtype)
    if spec is None or not out.is_contiguous() or out.numel() % spec[1] != 0:
        return out.bernoulli_(0.5, generator=generator).mul_(2).sub_(1)
    itype, nbits, one = spec
    key = (itype, out.device)
    if key not in _SHIFTS:  # bit k of a word goes to the sign bit of entry k
        _SHIFTS[key] = nbits - 1 - torch.arange(nbits, dtype=itype, device=out.device)
    low = -(2 ** (nbits - 1))  # the sign bit, as a signed integer
    words = torch.empty(out.numel() // nbits, 1, dtype=itype, device=out.device)
    words.random_(low, None, generator=generator)  # every bit uniform
    bits = out.view(itype).view(-1, nbits)
    torch.bitwise_left_shift(words, _SHIFTS[key], out=bits)
    bits.bitwise_and_(low)
    bits.bitwise_or_(one)  # the sign bit over the bits of 1.0
    return out
