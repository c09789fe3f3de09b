"""4×4 stride-2 convolutions and transposed convolutions that XLA:CPU runs fast.

The conv64 networks use only two convolution shapes, PyTorch's
`Conv2d(k=4, s=2, p=1)` (halves the image) and `ConvTranspose2d(k=4, s=2, p=1)`
(doubles it). XLA:CPU computes the forward stride-2 convolution well, but the
lhs-dilated convolutions that a transposed convolution and the input gradient
of a strided convolution lower to are several times slower than the same number
of FLOPs in a matrix product, and so is its filter gradient once the operands
outgrow the L2 cache. With `impl="fast"` these layers therefore compute

  * a transposed convolution as one stride-1 2×2 convolution of the input padded
    by 1, with 4·Cout output channels (one group per output phase: every output
    pixel of phase (s, t) sees a 2×2 window of inputs), then depth-to-space and
    a 1-pixel crop; for Cout = 1 (a decoder's last layer) as one matmul to the
    16 kernel taps followed by shifted adds;
  * the input gradient of each layer with the other layer's forward pass, since
    the two are adjoint: d(conv)/dx is a transposed convolution with the same
    kernel (Cin, Cout swapped), and d(transposed conv)/dx is a strided
    convolution;
  * the filter gradient of both with XLA's own strided-convolution filter
    gradient, over slices of the batch of about a megabyte each, summed.

The rewrite is exact up to float rounding: `impl="xla"` is the textbook layer,
and tests/test_layers.py checks both against a NumPy scatter-add definition.
`impl="fast"` uses `jax.custom_vjp`, so it supports reverse-mode AD (also
repeatedly), `jit` and `vmap`, but not forward-mode `jax.jvp`; use `impl="xla"`
for that.
"""

from collections.abc import Callable
import math
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

IMPLS = ("fast", "xla")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
_PAD1 = ((0, 0), (1, 1), (1, 1), (0, 0))
# Filter gradients are summed over batch slices of about this many bytes of
# the larger operand: one slice then fits the per-core L2 cache, and XLA's
# filter-gradient convolution runs 2-3x faster than on an 8-32 MB operand
# (0.25-1 MB slices measured equal; 2 MB and up slower).
_KERNEL_GRAD_SLICE_BYTES = 1 << 20
# At most this many slices (unrolled in the HLO), to bound compile time.
_KERNEL_GRAD_MAX_SLICES = 32


def _check_impl(impl: str) -> None:
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def _check_even(x: jax.Array, what: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"{what} expects [N, H, W, C] inputs, got shape {x.shape}")
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"{what} with impl='fast' needs an even height and width, got {x.shape}")


def _conv_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """[N, H, W, Cin] * [4, 4, Cin, Cout] -> [N, H//2, W//2, Cout], stride 2, padding 1."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=(2, 2), padding=((1, 1), (1, 1)), dimension_numbers=_DIMENSION_NUMBERS
  )


def _conv_transpose_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """[N, H, W, Cin] -> [N, 2H, 2W, Cout]: out[2i-1+kh, 2j-1+kw] += x[i, j] @ kernel[kh, kw]."""
  # lax.conv_transpose correlates the 2-dilated input (padded by k - 1 - p = 2)
  # with the kernel, so the scatter-add kernel is passed flipped.
  return lax.conv_transpose(
      x,
      jnp.flip(kernel, (0, 1)),
      strides=(2, 2),
      padding=((2, 2), (2, 2)),
      dimension_numbers=_DIMENSION_NUMBERS,
  )


def _phase_kernel(kernel: jax.Array) -> jax.Array:
  """[4, 4, Cin, Cout] -> [2, 2, Cin, 4·Cout] for `_conv_transpose_phases`.

  Window position m of the input padded by 1 covers inputs m-1 and m (taps
  a = 0, 1) and produces outputs 2m-1+s (phases s = 0, 1); the kernel row that
  joins tap a to phase s is kh = 2 + s - 2a. Output channels are ordered
  (s, t, cout).
  """
  _, _, cin, cout = kernel.shape
  # Reversing kh (3 - kh = 2a + 1 - s) and then each pair gives [a, s] order.
  k = jnp.flip(kernel, (0, 1)).reshape(2, 2, 2, 2, cin, cout)
  k = jnp.flip(k, (1, 3))  # [a, s, b, t, cin, cout]
  return k.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, cin, 4 * cout)


def _conv_transpose_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Same as `_conv_transpose_xla`, as one matmul to all 16 taps, then shifted adds.

  For few output channels (an image decoder's last layer) the 2×2
  convolution to 4·Cout channels is a poorly shaped convolution; here
  z = x @ kernel [Cin, 16·Cout] is a matrix product no bigger than x when
  16·Cout <= Cin, and each output phase (s, t) sums four shifted tap planes.
  """
  n, h, w, cin = x.shape
  cout = kernel.shape[3]
  z = jnp.dot(x, kernel.transpose(2, 0, 1, 3).reshape(cin, 16 * cout)).reshape(n, h, w, 4, 4, cout)
  z = jnp.pad(z, _PAD1 + ((0, 0), (0, 0)))
  # Window position m (of h + 1) covers inputs m-1 and m: kernel row 2+s-2a for tap a.
  phases = [
      [
          sum(z[:, a:a + h + 1, b:b + w + 1, 2 + s - 2 * a, 2 + t - 2 * b] for a in range(2) for b in range(2))
          for t in range(2)
      ]
      for s in range(2)
  ]
  y = jnp.stack([jnp.stack(row, -2) for row in phases], -3)  # [n, h+1, w+1, s, t, cout]
  y = y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h + 2, 2 * w + 2, cout)
  return y[:, 1:-1, 1:-1]


def _conv_transpose_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Same as `_conv_transpose_xla`, as a stride-1 2×2 convolution to 4·Cout channels + depth-to-space."""
  n, h, w, _ = x.shape
  cout = kernel.shape[3]
  y = lax.conv_general_dilated(
      jnp.pad(x, _PAD1), _phase_kernel(kernel), window_strides=(1, 1), padding="VALID",
      dimension_numbers=_DIMENSION_NUMBERS,
  )  # [n, h+1, w+1, (s, t, cout)]
  y = y.reshape(n, h + 1, w + 1, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h + 2, 2 * w + 2, cout)[:, 1:-1, 1:-1]


def _conv_transpose_rewritten(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`_conv_transpose_xla` computed as whichever rewrite is faster for the shape."""
  # Measured: the tap matmul is ~3x faster than the phase convolution for one
  # output channel and ~1.4x slower for three.
  if kernel.shape[3] == 1:
    return _conv_transpose_taps(x, kernel)
  return _conv_transpose_phases(x, kernel)


def _kernel_grad(x: jax.Array, g: jax.Array, kernel: jax.Array) -> jax.Array:
  """d<g, _conv_xla(x, k)>/dk [4, 4, Cin, Cout] for x [N, H, W, Cin], g [N, H/2, W/2, Cout]."""
  n = x.shape[0]
  per_example = max(math.prod(x.shape[1:]), math.prod(g.shape[1:])) * x.dtype.itemsize
  size = max(1, _KERNEL_GRAD_SLICE_BYTES // per_example, -(-n // _KERNEL_GRAD_MAX_SLICES))
  total = None
  # A Python loop, not lax.map/scan: inside a while loop XLA:CPU runs this
  # convolution with a slow generic emitter (measured 50-300x slower).
  for start in range(0, n, size):
    xs, gs = x[start:start + size], g[start:start + size]
    _, vjp = jax.vjp(lambda k, xs=xs: _conv_xla(xs, k), kernel)
    (dk,) = vjp(gs)
    total = dk if total is None else total + dk
  return total


def _swap_io(kernel: jax.Array) -> jax.Array:
  return jnp.swapaxes(kernel, 2, 3)


@jax.custom_vjp
def _conv_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _conv_xla(x, kernel)


def _conv_fast_fwd(x, kernel):
  return _conv_xla(x, kernel), (x, kernel)


def _conv_fast_bwd(residuals, g):
  x, kernel = residuals
  return _conv_transpose_rewritten(g, _swap_io(kernel)), _kernel_grad(x, g, kernel)


_conv_fast.defvjp(_conv_fast_fwd, _conv_fast_bwd)


@jax.custom_vjp
def _conv_transpose_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _conv_transpose_rewritten(x, kernel)


def _conv_transpose_fast_fwd(x, kernel):
  return _conv_transpose_rewritten(x, kernel), (x, kernel)


def _conv_transpose_fast_bwd(residuals, g):
  x, kernel = residuals
  # The transposed convolution is the adjoint of the strided one with the
  # kernel's Cin and Cout swapped, so both of its gradients are the strided
  # convolution's forward pass and filter gradient with roles exchanged.
  swapped = _swap_io(kernel)
  return _conv_xla(g, swapped), _swap_io(_kernel_grad(g, x, swapped))


_conv_transpose_fast.defvjp(_conv_transpose_fast_fwd, _conv_transpose_fast_bwd)


def _flatten_batch(x: jax.Array, fn: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """Applies fn to x [..., H, W, C] as [N, H, W, C] and restores the leading dims."""
  if x.ndim < 3:
    raise ValueError(f"expected [..., H, W, C] inputs, got shape {x.shape}")
  lead = x.shape[:-3]
  y = fn(x.reshape((-1,) + x.shape[-3:]))
  return y.reshape(lead + y.shape[1:])


def conv4x4_stride2(x: jax.Array, kernel: jax.Array, impl: str = "fast") -> jax.Array:
  """PyTorch's Conv2d(k=4, s=2, p=1) without bias, in NHWC.

  Args:
    x: [..., H, W, Cin] inputs (H, W even for impl="fast").
    kernel: [4, 4, Cin, Cout], nn.Conv's HWIO layout (cross-correlation), i.e.
      kernel = torch_weight.permute(2, 3, 1, 0) for a torch weight [Cout, Cin, 4, 4].
    impl: "fast" (custom gradients, see the module docstring) or "xla" (one
      lax.conv_general_dilated, differentiated by JAX).

  Returns:
    [..., H//2, W//2, Cout] with y[i, j] = Σ_{kh,kw} x_pad[2i+kh, 2j+kw] @ kernel[kh, kw],
    x_pad being x zero-padded by 1 on each side.
  """
  _check_impl(impl)
  if impl == "xla":
    return _flatten_batch(x, lambda v: _conv_xla(v, kernel))

  def fast(v):
    _check_even(v, "conv4x4_stride2")
    return _conv_fast(v, kernel)

  return _flatten_batch(x, fast)


def conv_transpose4x4_stride2(x: jax.Array, kernel: jax.Array, impl: str = "fast") -> jax.Array:
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1) without bias, in NHWC.

  Args:
    x: [..., H, W, Cin] inputs.
    kernel: [4, 4, Cin, Cout] in scatter orientation (not flipped):
      kernel = torch_weight.permute(2, 3, 0, 1) for a torch weight [Cin, Cout, 4, 4].
    impl: "fast" (phase decomposition and custom gradients, see the module
      docstring) or "xla" (lax.conv_transpose, differentiated by JAX).

  Returns:
    [..., 2H, 2W, Cout] with out[2i-1+kh, 2j-1+kw] += x[i, j] @ kernel[kh, kw]
    summed over all i, j, kh, kw (terms that land outside the output dropped).
  """
  _check_impl(impl)
  if impl == "xla":
    return _flatten_batch(x, lambda v: _conv_transpose_xla(v, kernel))
  return _flatten_batch(x, lambda v: _conv_transpose_fast(v, kernel))


class _Conv4x4(nn.Module):
  """The parameters and call shared by the two layers below; `_op` computes the layer."""

  features: int
  impl: str = "fast"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the layer to x [..., H, W, Cin]."""
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = type(self)._op(x, kernel, self.impl)
    return y + bias if bias is not None else y


class Conv4x4Stride2(_Conv4x4):
  """nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1))), computed fast.

  [..., H, W, Cin] -> [..., H//2, W//2, features]. Parameters `kernel`
  [4, 4, Cin, features] and `bias` [features] have nn.Conv's names, shapes,
  initialisers and meaning, so checkpoints are interchangeable with nn.Conv
  and between impls.

  Attributes:
    features: output channels.
    impl: "fast" or "xla" (see `conv4x4_stride2`).
    use_bias: whether to add `bias`.
    dtype: computation dtype (None: inferred from inputs and params).
    param_dtype: parameter dtype.
    kernel_init, bias_init: as in nn.Conv.
  """

  _op = staticmethod(conv4x4_stride2)


class ConvTranspose4x4Stride2(_Conv4x4):
  """PyTorch's ConvTranspose2d(Cin, features, 4, stride=2, padding=1) in NHWC.

  [..., H, W, Cin] -> [..., 2H, 2W, features]. Parameters: `kernel`
  [4, 4, Cin, features] in scatter orientation, kernel[kh, kw, ci, co] =
  torch_weight[ci, co, kh, kw] (torch weight [Cin, Cout, 4, 4], no flip), and
  `bias` [features] = torch bias. The same function is
  nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
  with its kernel = flip(kernel, (0, 1)), or with transpose_kernel=True and
  its kernel = swapaxes(kernel, 2, 3). Initialisers are nn.ConvTranspose's
  (lecun_normal over the [4, 4, Cin, features] kernel, zero bias).

  Attributes:
    features: output channels.
    impl: "fast" or "xla" (see `conv_transpose4x4_stride2`).
    use_bias: whether to add `bias`.
    dtype: computation dtype (None: inferred from inputs and params).
    param_dtype: parameter dtype.
    kernel_init, bias_init: as in nn.ConvTranspose.
  """

  _op = staticmethod(conv_transpose4x4_stride2)
