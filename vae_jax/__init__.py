"""vae_jax: disentangled representation learning with VAEs in JAX/Flax."""

__version__ = "0.1.0"
