"""Triton helpers shared by several kernels (one piece of code per job)."""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
"""Kernels run in Triton's CPU interpreter (read when a kernel module is imported: set it before, as
tests/conftest.py does); launch configurations are sized for it and bf16 rounding is emulated there."""


@triton.jit
def load_xyz(ptr, row, mask, other: tl.constexpr):
    """The three consecutive values (x, y, z) of each ``row`` of a [n, 3] tensor, as float32 (``other`` where
    masked off)."""
    x = tl.load(ptr + row * 3, mask=mask, other=other).to(tl.float32)
    y = tl.load(ptr + row * 3 + 1, mask=mask, other=other).to(tl.float32)
    z = tl.load(ptr + row * 3 + 2, mask=mask, other=other).to(tl.float32)
    return x, y, z


@triton.jit
def load_quat(ptr, row, mask):
    """The quaternion (w, x, y, z) of each ``row`` of a [n, 4] tensor, as float32; the identity where masked off."""
    qw = tl.load(ptr + row * 4, mask=mask, other=1.0).to(tl.float32)
    qx = tl.load(ptr + row * 4 + 1, mask=mask, other=0.0).to(tl.float32)
    qy = tl.load(ptr + row * 4 + 2, mask=mask, other=0.0).to(tl.float32)
    qz = tl.load(ptr + row * 4 + 3, mask=mask, other=0.0).to(tl.float32)
    return qw, qx, qy, qz


@triton.jit
def unit_quat_rotation(qw, qx, qy, qz):
    """Normalised quaternion (w, x, y, z), 1/|q| and the rotation matrix R(q/|q|) in row-major order.

    Returns the 14-tuple (w, x, y, z, inv_norm, r00, r01, r02, r10, r11, r12, r20, r21, r22).
    """
    inv = 1.0 / tl.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w = qw * inv
    x = qx * inv
    y = qy * inv
    z = qz * inv
    return (w, x, y, z, inv,
            1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
            2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
            2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y))


@triton.jit
def dot_acc(a, b, EMULATE_BF16: tl.constexpr):
    """a @ b accumulated in float32 (float64 for float64 tiles); float32 tiles use three TF32 products (tf32x3),
    which keeps float32 accuracy on the tensor cores. Under EMULATE_BF16 both operands go in as float32 (bf16 values
    multiply exactly there): the interpreter multiplies the raw bits of bf16 operands (docs/kernels.md §1)."""
    if EMULATE_BF16:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision="tf32x3")


@triton.jit
def cast_rne(x, dtype: tl.constexpr, EMULATE_BF16: tl.constexpr):
    """x rounded to nearest-even in ``dtype``; emulated bf16 stays a float32 tile holding the bf16 value (the
    interpreter's float32 -> bf16 cast truncates)."""
    if EMULATE_BF16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return x.to(dtype)
