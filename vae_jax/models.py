"""Encoders, decoders and the VAE module (Flax Linen, NHWC images).

Two architectures, as in Chen et al. (2018) and the β-VAE papers:
  conv64: 4 convolutions (32, 32, 64, 64 channels; 4×4, stride 2, padding 1) →
          dense 256 → (mean, log_var); decoder dense 256 → dense 4·4·64 → 4
          transposed convolutions (64, 32, 32, C; 4×4, stride 2) → 64×64×C.
  mlp:    flatten → 1200 → 1200 (ReLU) → (mean, log_var); decoder 1200 ×3 (tanh) → H·W·C.
The decoder outputs Bernoulli logits or Gaussian means, per the objective's likelihood.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vae_jax import layers
from vae_jax import losses

ARCHITECTURES = ("conv64", "mlp")
INITS = ("pytorch", "lecun")
# The encoder's scale head: log σ² itself, or log σ (Chen et al.'s code), log σ² = 2·output.
SCALE_OUTPUTS = ("log_var", "log_sigma")


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def layer_initializers(init: str, fan_in: int) -> dict:
  """kernel_init and bias_init of a layer with `fan_in` inputs per output.

  "pytorch": PyTorch's default for Linear and Conv2d, U(±1/√fan_in) for weights and
  biases, as in Chen et al.'s reference code and ../shared/bench/torch_reference.py.
  "lecun": Flax's default, truncated normal with variance 1/fan_in and zero biases.
  """
  if init == "pytorch":
    return dict(kernel_init=_uniform(fan_in**-0.5), bias_init=_uniform(fan_in**-0.5))
  if init == "lecun":
    return dict(kernel_init=nn.initializers.lecun_normal(), bias_init=nn.initializers.zeros_init())
  raise ValueError(f"Unknown model.init {init!r}; use one of {INITS}.")


class Conv64Encoder(nn.Module):
  """x [B, 64, 64, C] -> (mean, log_var) [B, latent_dim] with the conv64 network."""

  latent_dim: int
  channels: Sequence[int] = (32, 32, 64, 64)
  hidden: int = 256
  conv_impl: str = "fast"
  init: str = "pytorch"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x
    for features in self.channels:
      h = nn.relu(layers.Conv4x4Stride2(features, impl=self.conv_impl,
                                        **layer_initializers(self.init, 16 * h.shape[-1]))(h))
    h = h.reshape(h.shape[0], -1)
    h = nn.relu(nn.Dense(self.hidden, **layer_initializers(self.init, h.shape[-1]))(h))
    out = nn.Dense(2 * self.latent_dim, **layer_initializers(self.init, h.shape[-1]))(h)
    return out[:, : self.latent_dim], out[:, self.latent_dim :]


class Conv64Decoder(nn.Module):
  """z [B, latent_dim] -> logits or means [B, 64, 64, out_channels]."""

  out_channels: int
  channels: Sequence[int] = (64, 32, 32)
  hidden: int = 256
  conv_impl: str = "fast"
  init: str = "pytorch"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = nn.relu(nn.Dense(self.hidden, **layer_initializers(self.init, z.shape[-1]))(z))
    h = nn.relu(nn.Dense(4 * 4 * 64, **layer_initializers(self.init, h.shape[-1]))(h))
    h = h.reshape(h.shape[0], 4, 4, 64)
    for features in self.channels:
      h = nn.relu(self._up(features, h))
    return self._up(self.out_channels, h)

  def _up(self, features: int, h: jax.Array) -> jax.Array:
    conv = layers.ConvTranspose4x4Stride2(features, impl=self.conv_impl,
                                          **layer_initializers(self.init, 16 * h.shape[-1]))
    return conv(h)


class MLPEncoder(nn.Module):
  """x [B, H, W, C] -> (mean, log_var) [B, latent_dim]: flatten → 1200 → 1200 (ReLU)."""

  latent_dim: int
  hidden: Sequence[int] = (1200, 1200)
  init: str = "pytorch"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = nn.relu(nn.Dense(width, **layer_initializers(self.init, h.shape[-1]))(h))
    out = nn.Dense(2 * self.latent_dim, **layer_initializers(self.init, h.shape[-1]))(h)
    return out[:, : self.latent_dim], out[:, self.latent_dim :]


class MLPDecoder(nn.Module):
  """z [B, latent_dim] -> logits or means [B, *image_shape]: 1200 ×3 (tanh) → H·W·C."""

  image_shape: tuple[int, int, int]
  hidden: Sequence[int] = (1200, 1200, 1200)
  init: str = "pytorch"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.hidden:
      h = jnp.tanh(nn.Dense(width, **layer_initializers(self.init, h.shape[-1]))(h))
    out_size = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
    h = nn.Dense(out_size, **layer_initializers(self.init, h.shape[-1]))(h)
    return h.reshape(z.shape[0], *self.image_shape)


class VAE(nn.Module):
  """Encoder, reparameterised sample, decoder. (The objective decides how codes are used:
  the plain autoencoder, vae_jax.objectives.ae, decodes the mean.)"""

  encoder: nn.Module
  decoder: nn.Module
  scale_output: str = "log_var"  # What the encoder's scale head outputs: "log_var" or "log_sigma".

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior parameters (mean, log_var) [B, K] of images x [B, H, W, C]."""
    mean, scale = self.encoder(x)
    return mean, (2.0 * scale if self.scale_output == "log_sigma" else scale)

  def decode(self, z: jax.Array) -> jax.Array:
    """Decoder output [B, H, W, C] (logits or means) for codes z [B, K]."""
    return self.decoder(z)

  def __call__(self, x: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
    """Outputs for images x [B, H, W, C]: mean, log_var, z [B, K]; decoded [B, H, W, C]."""
    mean, log_var = self.encode(x)
    z = losses.reparameterize(rng, mean, log_var)
    return dict(mean=mean, log_var=log_var, z=z, decoded=self.decode(z))


def create_model(model_config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> VAE:
  """The VAE for `model_config` (architecture, latent_dim, conv_impl, mlp_width, init) and image shape."""
  arch = model_config.architecture
  if arch == "conv64":
    if tuple(image_shape[:2]) != (64, 64):
      raise ValueError(f"conv64 needs 64×64 images, got {image_shape}; use model.architecture='mlp'.")
    encoder = Conv64Encoder(model_config.latent_dim, conv_impl=model_config.conv_impl, init=model_config.init)
    decoder = Conv64Decoder(image_shape[2], conv_impl=model_config.conv_impl, init=model_config.init)
  elif arch == "mlp":
    width = model_config.mlp_width
    encoder = MLPEncoder(model_config.latent_dim, hidden=(width, width), init=model_config.init)
    decoder = MLPDecoder(tuple(image_shape), hidden=(width, width, width), init=model_config.init)
  else:
    raise ValueError(f"Unknown model.architecture {arch!r}; use one of {ARCHITECTURES}.")
  if model_config.get("scale_output", "log_var") not in SCALE_OUTPUTS:
    raise ValueError(f"Unknown model.scale_output {model_config.scale_output!r}; use one of {SCALE_OUTPUTS}.")
  return VAE(encoder=encoder, decoder=decoder, scale_output=model_config.get("scale_output", "log_var"))
