"""β-VAE (β = 4) with the conv64 networks on SmallNORB.

    python -m vae_jax.main --config=configs/betavae_smallnorb.py --workdir=runs/betavae_smallnorb

Files: TFDS's smallnorb (NYU's smallnorb-*-{dat,cat,info}.mat.gz, about 250 MB), which
the first run downloads into data.data_dir (default $TFDS_DATA_DIR or
~/tensorflow_datasets) and caches as a 48,600-image grid (200 MB). Without network
access, build it elsewhere with `python -m vae_jax.data.build smallnorb --data_dir=DIR`
and copy DIR/smallnorb over.

The grid is category 5 x instance 10 x elevation 9 x azimuth 18 x lighting 6: TFDS's
train and test splits together, left camera, 96x96 resized to 64x64 (as
disentanglement_lib). Instance is a nuisance factor (it indexes the grid but is not a
factor to disentangle), so Chen's MIG counts category, elevation, azimuth and lighting
only; the histogram MIG counts all five. β = 4 sits in the middle of
disentanglement_lib's sweep; Bernoulli likelihood, 10 latents, Adam at 1e-4.

Expected result: not measured here (no offline copy). 20,000 steps of batch 256 (105
epochs) take roughly 3 hours on a 2-core CPU, minutes on a GPU.
"""

from vae_jax.configlib import conv64_betavae_config


def get_config():
  config = conv64_betavae_config("smallnorb", beta=4.0)
  config.eval.mig_factors = ("category", "elevation", "azimuth", "lighting")
  return config
