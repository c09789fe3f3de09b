"""vae_jax.layers: fast == xla == an independent NumPy definition, forward and gradients.

The NumPy references are written in PyTorch's NCHW convention with PyTorch's
weight layouts, so they also pin down the documented weight mapping.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import layers

# (batch, height, width, cin, cout); covers cin = 1, cout = 1 (the tap path),
# non-square images, 64 -> 32, and 4 -> 8.
SHAPES = [
    (2, 8, 8, 3, 5),
    (3, 6, 10, 4, 1),
    (2, 12, 8, 1, 6),
    (1, 64, 64, 2, 3),
    (5, 4, 4, 8, 16),
]


def torch_conv2d(x_nchw, weight, bias):
  """PyTorch Conv2d(k=4, s=2, p=1): x [N, Cin, H, W], weight [Cout, Cin, 4, 4] -> [N, Cout, H/2, W/2]."""
  n, _, h, w = x_nchw.shape
  xp = np.pad(x_nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
  out = np.zeros((n, weight.shape[0], h // 2, w // 2))
  for kh in range(4):
    for kw in range(4):
      patch = xp[:, :, kh:kh + h - 1:2, kw:kw + w - 1:2]  # [N, Cin, H/2, W/2]
      out += np.einsum("nchw,oc->nohw", patch, weight[:, :, kh, kw])
  return out + bias[None, :, None, None]


def torch_conv_transpose2d(x_nchw, weight, bias):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) by scatter-add: weight [Cin, Cout, 4, 4] -> [N, Cout, 2H, 2W]."""
  n, _, h, w = x_nchw.shape
  full = np.zeros((n, weight.shape[1], 2 * h + 2, 2 * w + 2))
  for i in range(h):
    for j in range(w):
      # Input pixel (i, j) adds x[i, j] @ weight[:, :, kh, kw] at full-size (2i + kh, 2j + kw).
      full[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += np.einsum("nc,cokl->nokl", x_nchw[:, :, i, j], weight)
  return full[:, :, 1:-1, 1:-1] + bias[None, :, None, None]


def torch_conv2d_grads(x_nchw, weight, r):
  """Gradients of <r, conv2d(x)> wrt x, weight and bias, from their index definitions."""
  n, cin, h, w = x_nchw.shape
  xp = np.pad(x_nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
  dxp = np.zeros_like(xp)
  dw = np.zeros_like(weight)
  for kh in range(4):
    for kw in range(4):
      rows, cols = slice(kh, kh + h - 1, 2), slice(kw, kw + w - 1, 2)
      dxp[:, :, rows, cols] += np.einsum("nohw,oc->nchw", r, weight[:, :, kh, kw])
      dw[:, :, kh, kw] = np.einsum("nohw,nchw->oc", r, xp[:, :, rows, cols])
  return dxp[:, :, 1:-1, 1:-1], dw, r.sum((0, 2, 3))


def torch_conv_transpose2d_grads(x_nchw, weight, r):
  """Gradients of <r, conv_transpose2d(x)> wrt x, weight and bias, from the scatter definition."""
  n, cin, h, w = x_nchw.shape
  rp = np.pad(r, ((0, 0), (0, 0), (1, 1), (1, 1)))  # full-size, before the crop
  dx = np.zeros_like(x_nchw)
  dw = np.zeros_like(weight)
  for i in range(h):
    for j in range(w):
      window = rp[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4]  # [N, Cout, 4, 4]
      dx[:, :, i, j] = np.einsum("nokl,cokl->nc", window, weight)
      dw += np.einsum("nc,nokl->cokl", x_nchw[:, :, i, j], window)
  return dx, dw, r.sum((0, 2, 3))


def nhwc(a):
  return np.transpose(a, (0, 2, 3, 1))


def nchw(a):
  return np.transpose(a, (0, 3, 1, 2))


def assert_close(actual, expected, tol=2e-5):
  """|actual - expected| <= tol · max|expected| elementwise (float32 against float64 sums)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  scale = max(1.0, np.abs(expected).max())
  np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


def random_case(shape, transpose, seed):
  """Random torch-layout weight, bias, NHWC input and output-shaped weights r."""
  batch, h, w, cin, cout = shape
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, h, w, cin))
  weight = rng.normal(size=(cin, cout, 4, 4) if transpose else (cout, cin, 4, 4)) / np.sqrt(4 * cin)
  bias = rng.normal(size=cout)
  out_hw = (2 * h, 2 * w) if transpose else (h // 2, w // 2)
  r = rng.normal(size=(batch, *out_hw, cout))
  return x, weight, bias, r


def random_params(model, x, seed):
  """Random N(0, 0.3²) parameters with model's structure (no init: its RNG compiles slowly)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), shapes)


def module_for(transpose, cout, impl):
  cls = layers.ConvTranspose4x4Stride2 if transpose else layers.Conv4x4Stride2
  return cls(cout, impl=impl)


def params_from_torch(weight, bias, transpose):
  """The documented mapping from PyTorch's weight layout to `kernel`."""
  kernel = weight.transpose(2, 3, 0, 1) if transpose else weight.transpose(2, 3, 1, 0)
  return {"params": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}}


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradients_match_numpy(shape, transpose):
  x, weight, bias, r = random_case(shape, transpose, seed=sum(shape) + transpose)
  params = params_from_torch(weight, bias, transpose)
  if transpose:
    expected = nhwc(torch_conv_transpose2d(nchw(x), weight, bias))
    dx, dw, db = torch_conv_transpose2d_grads(nchw(x), weight, nchw(r))
    dkernel = dw.transpose(2, 3, 0, 1)
  else:
    expected = nhwc(torch_conv2d(nchw(x), weight, bias))
    dx, dw, db = torch_conv2d_grads(nchw(x), weight, nchw(r))
    dkernel = dw.transpose(2, 3, 1, 0)

  for impl in layers.IMPLS:
    model = module_for(transpose, shape[-1], impl)
    apply = jax.jit(model.apply)
    assert_close(apply(params, jnp.asarray(x, jnp.float32)), expected)

    def functional(p, x):
      return jnp.sum(model.apply(p, x) * jnp.asarray(r, jnp.float32))

    grads = jax.jit(jax.grad(functional, argnums=(0, 1)))(params, jnp.asarray(x, jnp.float32))
    assert_close(grads[1], nhwc(dx))
    assert_close(grads[0]["params"]["kernel"], dkernel)
    assert_close(grads[0]["params"]["bias"], db)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_fast_equals_xla_through_a_nonlinear_loss(transpose):
  # Gradients of a non-linear loss of two stacked layers: the fast backward
  # must agree with JAX's differentiation of the textbook layers.
  x, _, _, _ = random_case((3, 16, 16, 4, 6), transpose, seed=7)
  x = jnp.asarray(x, jnp.float32)

  class Net(nn.Module):
    impl: str

    @nn.compact
    def __call__(self, x):
      h = jnp.tanh(module_for(transpose, 6, self.impl)(x))
      return module_for(transpose, 2, self.impl)(h)

  params = random_params(Net("xla"), x, seed=8)

  def loss(p, x, impl):
    return jnp.sum(jnp.sin(Net(impl).apply(p, x)) ** 2)

  values = {impl: jax.jit(jax.value_and_grad(loss, (0, 1)), static_argnums=2)(params, x, impl) for impl in layers.IMPLS}
  assert_close(values["fast"][0], values["xla"][0])
  jax.tree.map(assert_close, values["fast"][1], values["xla"][1])


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_second_order_gradients_match(transpose):
  x, weight, bias, _ = random_case((2, 8, 8, 3, 4), transpose, seed=3)
  params = params_from_torch(weight, bias, transpose)
  x = jnp.asarray(x, jnp.float32)

  def grad_norm(p, impl):
    loss = lambda p: jnp.sum(jnp.tanh(module_for(transpose, 4, impl).apply(p, x)) ** 2)
    return sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(loss)(p)))

  hvp = {impl: jax.jit(jax.grad(grad_norm), static_argnums=1)(params, impl) for impl in layers.IMPLS}
  jax.tree.map(lambda a, b: assert_close(a, b, tol=1e-4), hvp["fast"], hvp["xla"])


def test_conv_parameters_are_nn_convs():
  x = jnp.ones((2, 16, 16, 3))
  reference = nn.Conv(8, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
  expected_params = reference.init(jax.random.key(1), x)
  for impl in layers.IMPLS:
    params = layers.Conv4x4Stride2(8, impl=impl).init(jax.random.key(1), x)
    assert jax.tree.structure(params) == jax.tree.structure(expected_params)
    jax.tree.map(np.testing.assert_array_equal, params, expected_params)
    x = jax.random.normal(jax.random.key(2), x.shape)
    apply = jax.jit(layers.Conv4x4Stride2(8, impl=impl).apply)
    assert_close(apply(params, x), jax.jit(reference.apply)(params, x))


def test_conv_transpose_matches_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(3), (2, 5, 7, 3))
  params = layers.ConvTranspose4x4Stride2(4).init(jax.random.key(4), x)
  kernel, bias = params["params"]["kernel"], params["params"]["bias"]
  assert kernel.shape == (4, 4, 3, 4) and bias.shape == (4,)
  flax_init = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2))).init(jax.random.key(4), x)
  jax.tree.map(np.testing.assert_array_equal, params, flax_init)  # same initialisers
  ours = jax.jit(layers.ConvTranspose4x4Stride2(4, impl="xla").apply)(params, x)
  assert ours.shape == (2, 10, 14, 4)
  flipped = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
  assert_close(jax.jit(flipped.apply)({"params": {"kernel": kernel[::-1, ::-1], "bias": bias}}, x), ours)
  transposed = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), transpose_kernel=True)
  assert_close(jax.jit(transposed.apply)({"params": {"kernel": jnp.swapaxes(kernel, 2, 3), "bias": bias}}, x), ours)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_leading_batch_dims_vmap_and_no_bias(transpose):
  x = jax.random.normal(jax.random.key(5), (2, 3, 8, 8, 2))
  model = module_for(transpose, 3, "fast")
  params = random_params(model, x[0], seed=9)
  flat = jax.jit(model.apply)(params, x.reshape(6, 8, 8, 2))
  assert_close(jax.jit(model.apply)(params, x), flat.reshape((2, 3) + flat.shape[1:]))
  assert_close(jax.jit(jax.vmap(model.apply, (None, 0)))(params, x), flat.reshape((2, 3) + flat.shape[1:]))
  # A vmapped gradient (an ensemble of per-member parameters) agrees with the xla impl.
  stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)

  def grads(impl):
    loss = lambda p, x: jnp.sum(module_for(transpose, 3, impl).apply(p, x) ** 2)
    return jax.jit(jax.vmap(jax.grad(loss)))(stacked, x)

  jax.tree.map(assert_close, grads("fast"), grads("xla"))
  cls = layers.ConvTranspose4x4Stride2 if transpose else layers.Conv4x4Stride2
  params = jax.eval_shape(cls(3, use_bias=False).init, jax.random.key(6), x[0])
  assert set(params["params"]) == {"kernel"}


def test_bad_arguments():
  x = jnp.ones((1, 8, 8, 2))
  with pytest.raises(ValueError, match="impl"):
    jax.eval_shape(layers.Conv4x4Stride2(3, impl="cudnn").init, jax.random.key(0), x)
  with pytest.raises(ValueError, match="even"):
    jax.eval_shape(layers.Conv4x4Stride2(3).init, jax.random.key(0), jnp.ones((1, 7, 8, 2)))
  # Odd sizes are fine for the textbook layer (floor(H / 2) outputs, like PyTorch).
  y = jax.eval_shape(layers.Conv4x4Stride2(3, impl="xla").init_with_output, jax.random.key(0), jnp.ones((1, 7, 9, 2)))[0]
  assert y.shape == (1, 3, 4, 3)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_kernel_gradient_over_uneven_batch_slices(transpose, monkeypatch):
  # Force the filter gradient to be summed over slices of 2, 2 and 1 examples.
  shape = (5, 8, 8, 3, 4)
  x, weight, bias, r = random_case(shape, transpose, seed=11)
  per_example = 4 * max(8 * 8 * 3, (16 * 16 if transpose else 4 * 4) * 4)
  monkeypatch.setattr(layers, "_KERNEL_GRAD_SLICE_BYTES", 2 * per_example)
  model = module_for(transpose, 4, "fast")
  grad = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, jnp.asarray(x, jnp.float32)) * r)))
  dkernel = grad(params_from_torch(weight, bias, transpose))["params"]["kernel"]
  if transpose:
    expected = torch_conv_transpose2d_grads(nchw(x), weight, nchw(r))[1].transpose(2, 3, 0, 1)
  else:
    expected = torch_conv2d_grads(nchw(x), weight, nchw(r))[1].transpose(2, 3, 1, 0)
  assert_close(dkernel, expected)
