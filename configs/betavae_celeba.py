"""β-VAE (β = 250, Higgins et al.'s value for CelebA) with the conv64 networks on CelebA.

    python -m vae_jax.main --config=configs/betavae_celeba.py --workdir=runs/betavae_celeba

Files: TFDS's celeb_a (img_align_celeba.zip and the annotation files, about 1.4 GB),
which the first run downloads into data.data_dir (default $TFDS_DATA_DIR or
~/tensorflow_datasets) and then caches as 162,770 64x64 crops (2 GB, in
<data_dir>/vae_jax_cache). Without network access, build it elsewhere with
`python -m vae_jax.data.build celeb_a --data_dir=DIR` and copy DIR/celeb_a over (the
error message says exactly where). The images are TFDS's train split, centre-cropped
to 148x148 and resized to 64x64 (tfds_datasets.CELEBA_CROP).

Likelihood: Bernoulli (cross-entropy on [0, 1] intensities), not Gaussian. β = 250
is only meaningful against a reconstruction term of the scale Higgins et al. used;
a unit-variance Gaussian on [0, 1] pixels makes the reconstruction term about 100
times smaller than the cross-entropy's (squared errors of ~0.01 per pixel), so at
β = 250 it would switch off every latent. With the cross-entropy, β = 250 still
keeps only a few latents active (expect blurry reconstructions, like the paper's).
Latent size 32 and Adam at 1e-4, as in the β-VAE paper's CelebA setup.

CelebA has no ground-truth factors, so no MIG or other factor metric is computed
(eval.final = 'none'); metrics.json records the training losses. The 40 binary
attributes are available for downstream probes: get_dataset(...).attributes(indices).

Expected result: not measured here (no offline copy of CelebA). 20,000 steps of batch
256 (31 epochs) take roughly 3 hours on a 2-core CPU (conv64: ~500 images/s), minutes on
a GPU. With no factors, judge the result by latent traversals and by how well the
attributes can be read from the codes.
"""

from vae_jax.configlib import conv64_betavae_config


def get_config():
  config = conv64_betavae_config("celeb_a", beta=250.0, latent_dim=32)
  config.eval.final = "none"  # No factors: Chen's MIG and the histogram MIG cannot run.
  config.eval.every_steps = 0
  return config
