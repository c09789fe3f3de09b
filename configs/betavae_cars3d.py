"""β-VAE (β = 4) with the conv64 networks on Cars3D (Reed et al., 2015).

    python -m vae_jax.main --config=configs/betavae_cars3d.py --workdir=runs/betavae_cars3d

Files: nips2015-analogy-data.tar.gz from http://www.scottreed.info/files/ (or its
data/cars/car_*_mesh.mat files extracted into <manual>/cars/), placed in
<data_dir>/downloads/manual/ (data_dir = data.data_dir, default $TFDS_DATA_DIR or
~/tensorflow_datasets). The first run builds the TFDS dataset cars3d (183 models x 24
azimuths x 4 elevations = 17,568 images, 64x64 by 2x2 averaging of the 128x128
renders; reading the .mat files needs SciPy) and its grid cache (216 MB);
`python -m vae_jax.data.build cars3d` does it ahead. With data.cache='auto' the grid is
held in RAM.

β = 4 sits in the middle of disentanglement_lib's β sweep (1 to 16); no paper fixes one
β for Cars3D. Bernoulli likelihood, 10 latents, Adam at 1e-4 as disentanglement_lib.
Both MIGs count all three factors (model, azimuth, elevation), as disentanglement_lib.

Expected result: not measured here (no offline copy). 20,000 steps of batch 256 (291
epochs of this small grid) take roughly 3 hours on a 2-core CPU, minutes on a GPU.
Expect a low MIG: the 183 car models are one categorical factor that no latent
encodes smoothly.
"""

from vae_jax.configlib import conv64_betavae_config


def get_config():
  return conv64_betavae_config("cars3d", beta=4.0)
