"""β-VAE (β = 4) with the conv64 networks on MPI3D (toy; realistic and real by one flag).

    python -m vae_jax.main --config=configs/betavae_mpi3d.py --workdir=runs/betavae_mpi3d_toy

Other variants: add --config.data.name=mpi3d_realistic or --config.data.name=mpi3d_real
(and a different --workdir).

Files: mpi3d_toy.npz (or mpi3d_realistic.npz, mpi3d_real.npz; 12.7 GB each) from
https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/, placed in
<data_dir>/downloads/manual/ (data_dir = data.data_dir, default $TFDS_DATA_DIR or
~/tensorflow_datasets). The first run checks the file (key "images", uint8
[1036800, 64, 64, 3]), builds the TFDS dataset mpi3d/<variant> and the grid cache
(12.7 GB; with data.cache='auto' it is read into RAM if it fits in half the free
memory, else memory-mapped); `python -m vae_jax.data.build mpi3d_toy` does it ahead.
Plan on ~40 GB of disk per variant (the .npz, TFDS's copy, the cache).

Grid: object_color 6 x object_shape 6 x object_size 2 x camera_height 3 x
background_color 3 x horizontal_axis 40 x vertical_axis 40. β = 4 sits in the middle of
disentanglement_lib's sweep; Bernoulli likelihood, 10 latents, Adam at 1e-4. Both
MIGs count all seven factors.

Expected result: not measured here (no offline copy). 20,000 steps of batch 256 (4.9
epochs) take roughly 3 hours on a 2-core CPU, minutes on a GPU; the full evaluation
encodes all 1,036,800 images.
"""

from vae_jax.configlib import conv64_betavae_config


def get_config():
  return conv64_betavae_config("mpi3d_toy", beta=4.0)
