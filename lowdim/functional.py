"""Pure tensor math shared by every weight space. No nn.Module, no state.

Orientation follows torch: a linear weight is (out, in) and a layer computes y = x @ W.T.
A low-rank update is kept as two factors, ``down`` (r, in) and ``up`` (out, r), so that
ΔW = up @ down. Factors may carry leading batch dimensions (one adapter per sample).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import Tensor


def layer_seed(adapter_seed: int, layer_name: str) -> int:
    """A 63-bit seed for one layer, stable across platforms and Python versions. torch's CPU generator, which makes
    the bases from it, reads only its low 32 bits (two layers share bases with chance 2**-32, not 2**-63); the
    format keeps all 63, which a stack's component seeds hash again.

    Hashing the name (not enumerating layers) keeps a layer's bases fixed when other layers are
    added or removed from the layer set.
    """
    digest = hashlib.sha256(f"{int(adapter_seed)}:{layer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def orthonormal_columns(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    """A (rows, cols) float64 matrix with orthonormal columns, reproducible from the generator.

    QR of a Gaussian matrix is Haar-distributed only once the signs are fixed (diag(R) > 0);
    fixing them also makes the result independent of the LAPACK sign convention.
    """
    if cols > rows:
        raise ValueError(f"cannot fit {cols} orthonormal columns in dimension {rows}")
    gaussian = torch.randn(rows, cols, generator=generator, dtype=torch.float64, device="cpu")
    q, r = torch.linalg.qr(gaussian, mode="reduced")
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


def basis_checksum(tensors: Iterable[Tensor]) -> str:
    """A short checksum of frozen bases that usually tolerates last-bit float noise between platforms.

    Values are rounded to a 2^-20 grid before hashing, so ulp-level differences from another LAPACK
    usually still match, while a genuinely different basis never does. Usually, not always: a value
    within its difference of a grid midpoint ((k + 0.5) · 2^-20) rounds to the other neighbour, and the
    whole checksum changes, so a valid adapter made on another platform can very rarely be refused as
    having other bases. The chance is about difference / 2^-20 per value that differs: next to nothing
    for bases made in float64 and then rounded to float32 (LiDB's), where another LAPACK rarely moves
    the float32 value at all. Changing the grid or the hash would refuse every stored file.
    """
    hasher = hashlib.sha256()
    for tensor in tensors:
        grid = torch.round(tensor.detach().to(torch.float64).cpu() * (1 << 20)).to(torch.int64)
        hasher.update(str(tuple(grid.shape)).encode())
        hasher.update(grid.contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def lowrank_delta(down: Tensor, up: Tensor) -> Tensor:
    """Dense ΔW = up @ down, batched over leading dimensions."""
    return up @ down


def lowrank_add_(result: Tensor, x: Tensor, down: Tensor, up: Tensor, scale: float = 1.0) -> Tensor:
    """Adds ``scale · x @ ΔW.T`` to ``result`` in place and returns it: x (N, in), result (N, out), factors
    unbatched.

    The second product accumulates into ``result`` (``Tensor.addmm_``), so an adapted layer's update
    launches two GEMMs and nothing else: no kernel writes the full-size update and none adds it. An
    out-of-place ``torch.addmm`` would not do: on a GPU it first copies its input into a new output,
    which is the add again. At batch 1 a GPU waits on its host launching kernels, and every adapted
    layer of every forward pays this. ``result`` must not be needed by autograd (a linear layer's output
    is not: its backward reads the input and the weight). The down product is in x's dtype, the up
    product in ``result``'s (they differ under autocast).

    Under a torch.func transform (``vmap`` over ``functional_call``) the add is out of place: vmap has no
    batching rule for ``addmm_`` (a slow per-sample loop and a warning on every call), and cannot add a
    batched update into an unbatched ``result`` in place at all (adapter params vmapped, the model's not).
    """
    if down.dtype != x.dtype:  # the forward passes factors already cast: no call for a no-op .to() then
        down = down.to(x.dtype)
    hidden = x @ down.T
    if hidden.dtype != result.dtype:
        hidden, up = hidden.to(result.dtype), up.to(result.dtype)
    elif up.dtype != result.dtype:
        up = up.to(result.dtype)
    if _functorch_active():
        return torch.addmm(result, hidden, up.T, alpha=scale)
    return result.addmm_(hidden, up.T, alpha=scale)


# Whether a torch.func transform (vmap, grad, jvp) is running: one C call, no Python frames. A private torch
# function: a torch without it keeps the in-place add (vmap then warns, as before).
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def lowrank_apply(x: Tensor, down: Tensor, up: Tensor) -> Tensor:
    """x @ ΔW.T computed as (x @ down.T) @ up.T, never forming ΔW.

    With unbatched factors, x is (..., in). With factors batched as (B, r, in) and (B, out, r),
    x is (N, ..., in) where N is a multiple of B: sample j uses adapter j % B. That is the layout
    classifier-free guidance produces when it concatenates [uncond, cond] copies of a batch.
    """
    down = down.to(x.dtype)
    up = up.to(x.dtype)
    if down.dim() == 2:
        return (x @ down.T) @ up.T
    batch = down.shape[0]
    if x.shape[0] % batch:
        raise ValueError(f"input batch {x.shape[0]} is not a multiple of the adapter batch {batch}")
    tiles = x.shape[0] // batch
    # (tiles, B, L, in) -> (B, tiles·L, in): one batched matmul per factor, each adapter on its samples.
    grouped = x.reshape(tiles, batch, -1, x.shape[-1]).transpose(0, 1).reshape(batch, -1, x.shape[-1])
    out = torch.bmm(torch.bmm(grouped, down.transpose(1, 2)), up.transpose(1, 2))
    out = out.reshape(batch, tiles, -1, up.shape[-2]).transpose(0, 1)
    return out.reshape(*x.shape[:-1], up.shape[-2])


def concat_factors(factors: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Exact LoRA form of a sum of low-rank updates: ranks add, factors concatenate."""
    downs = [down for down, _ in factors]
    ups = [up for _, up in factors]
    return torch.cat(downs, dim=-2), torch.cat(ups, dim=-1)


def numerical_rank(matrix: Tensor, rtol: float = 1e-6) -> int:
    """Number of singular values above rtol times the largest (0 for a zero matrix)."""
    values = torch.linalg.svdvals(matrix.to(torch.float64))
    if values.numel() == 0 or values[0] == 0:
        return 0
    return int((values > rtol * values[0]).sum())
