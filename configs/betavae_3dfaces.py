"""β-VAE (β = 20, Higgins et al.'s value for 3D faces) with the conv64 networks on 3D faces.

    python -m vae_jax.main --config=configs/betavae_3dfaces.py --workdir=runs/betavae_3dfaces

Files: basel_face_renders.pth (Chen et al.'s uint8 tensor [50, 21, 11, 11, 64, 64]:
identity, azimuth, elevation, lighting; reading it needs PyTorch), or the same array
as basel_face_renders.npy or as key "images" of basel_face_renders.npz, placed in
<data_dir>/downloads/manual/ (data_dir = data.data_dir, default $TFDS_DATA_DIR or
~/tensorflow_datasets). The renders are not distributed publicly (see
vae_jax/data/manual_datasets.py). The first run builds the TFDS dataset faces3d and a
127,050-image grid cache (520 MB); `python -m vae_jax.data.build faces3d` does it ahead.

Bernoulli likelihood on grey intensities, 32 latents and Adam at 1e-4, as in the
β-VAE paper. Chen's MIG counts azimuth, elevation and lighting and leaves identity
out, as Chen et al. do (50 identities are not one smooth factor); the histogram MIG
counts all four.

Expected result: not measured here (no offline copy of the renders). 20,000 steps of
batch 256 (40 epochs) take roughly 3 hours on a 2-core CPU, minutes on a GPU. Compare
the MIG with Chen et al.'s 3D-faces figures only with the same factors counted (theirs:
azimuth, elevation, lighting) and say that the networks differ.
"""

from vae_jax.configlib import conv64_betavae_config


def get_config():
  config = conv64_betavae_config("faces3d", beta=20.0, latent_dim=32)
  config.eval.mig_factors = ("azimuth", "elevation", "lighting")
  return config
