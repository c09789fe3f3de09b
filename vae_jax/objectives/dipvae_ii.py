"""DIP-VAE-II (Kumar et al., 2018, eq. 7): DIP-VAE-I's penalty on the covariance of q(z) itself.

loss = −log p(x|z) + KL + λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)², C = E[diag σ²(x)] + Cov[μ(x)]
over the batch, λ_d = λ_od (disentanglement_lib's factor 1). The regulariser and the
shared hyperparameter `lambda_od` are documented in vae_jax/objectives/dipvae_i.py.
"""

from __future__ import annotations

from vae_jax.objectives import dipvae_i


class DIPVAEII(dipvae_i.DIPVAEI):
  """DIP-VAE-I with C the covariance of q(z) (E[diag σ²(x)] + Cov[μ(x)]) and λ_d = λ_od."""
  TITLE = "DIP-VAE-II"

  DIP_TYPE = "ii"
  LAMBDA_D_FACTOR = 1.0


OBJECTIVE = DIPVAEII
