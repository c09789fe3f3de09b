"""Tests for vae_jax.parallel: the mesh, batch assembly and the ensemble map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import parallel


def _two_layer(params, x):
  """A tiny network whose products vmap turns into batched matmuls."""
  h = jnp.tanh(x @ params["w1"])
  return {"out": h @ params["w2"], "norm": jnp.sum(params["w1"] ** 2)}


def _params(num_members, seed=0):
  rng = np.random.default_rng(seed)
  return {"w1": jnp.asarray(rng.normal(size=(num_members, 5, 7)), jnp.float32),
          "w2": jnp.asarray(rng.normal(size=(num_members, 7, 3)), jnp.float32)}


@pytest.mark.parametrize("num_members", [1, 3])
def test_vmap_members_matches_a_loop_over_members(num_members):
  params = _params(num_members)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)), jnp.float32)
  got = parallel.vmap_members(_two_layer, in_axes=(0, None))(params, x)
  for m in range(num_members):
    want = _two_layer(jax.tree.map(lambda a: a[m], params), x)
    np.testing.assert_allclose(got["out"][m], want["out"], rtol=1e-6)
    np.testing.assert_allclose(got["norm"][m], want["norm"], rtol=1e-6)
  assert got["out"].shape == (num_members, 4, 3) and got["norm"].shape == (num_members,)


def _dot_batch_dims(fn, *args):
  eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
  return [e.params["dimension_numbers"][1][0] for e in eqns if e.primitive.name == "dot_general"]


def test_vmap_members_uses_plain_products_for_one_member():
  x = jnp.ones((2, 4, 5), jnp.float32)  # Per-member inputs (in_axis 0).
  one = _dot_batch_dims(parallel.vmap_members(_two_layer, unroll=False), _params(1), x[:1])
  many = _dot_batch_dims(parallel.vmap_members(_two_layer, unroll=False), _params(2), x)
  assert one and all(batch_dims == () for batch_dims in one)
  assert all(batch_dims != () for batch_dims in many)


def test_vmap_members_unrolls_small_ensembles_on_cpu():
  assert jax.default_backend() == "cpu"
  x = jnp.ones((3, 4, 5), jnp.float32)
  unrolled = _dot_batch_dims(parallel.vmap_members(_two_layer), _params(3), x)
  assert len(unrolled) == 2 * 3 and all(batch_dims == () for batch_dims in unrolled)
  many = parallel.MAX_UNROLLED_MEMBERS + 1
  batched = _dot_batch_dims(parallel.vmap_members(_two_layer), _params(many), jnp.ones((many, 4, 5)))
  assert len(batched) == 2 and all(batch_dims != () for batch_dims in batched)


@pytest.mark.parametrize("unroll", [True, False])
def test_vmap_members_unrolled_and_batched_agree(unroll):
  params = _params(3, seed=2)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 4, 5)), jnp.float32)
  got = parallel.vmap_members(_two_layer, unroll=unroll)(params, x)
  want = jax.vmap(_two_layer)(params, x)
  np.testing.assert_allclose(got["out"], want["out"], rtol=1e-5)
  np.testing.assert_allclose(got["norm"], want["norm"], rtol=1e-5)


def test_vmap_members_rejects_mismatched_ensemble_sizes():
  with pytest.raises(ValueError, match="disagree"):
    parallel.vmap_members(_two_layer)(_params(2), jnp.ones((3, 4, 5)))



# The ('members', 'data') mesh. XLA_FLAGS must be set before JAX starts, so the checks
# that need 8 devices run in a subprocess: this file run as a script (see the end).

import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
MESHES = ((8, 1), (4, 2), (2, 4), (1, 8))


def _env(devices):
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
          "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}


def _load_test_config(overrides=()):
  import importlib.util

  spec = importlib.util.spec_from_file_location("test_config_module", REPO / "configs" / "test.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in overrides:
    node = config
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return config


def _train_on_meshes(out: str) -> None:
  """Subprocess (8 CPU devices): 3 steps of an 8-member ensemble on each mesh, and 8 single runs on one device."""
  from vae_jax import rundir, train
  from vae_jax.data import get_dataset, pipeline

  assert jax.device_count() == 8
  parallel.MAX_UNROLLED_MEMBERS = 1  # vmap the members: compiling 8 unrolled copies takes far longer.
  config = _load_test_config([("ensemble.num_members", 8), ("ensemble.betas", tuple(1.0 + m for m in range(8)))])
  dataset = get_dataset(config.data)
  model, objective, optimizers, initial = rundir.build(config, dataset, len(dataset))
  spec = train.StepSpec(objective, model.apply, optimizers)
  batches = [pipeline.ensemble_batch(dataset, list(range(8)), step, config.batch_size) for step in range(3)]

  def run(state, mesh):
    state = jax.device_put(state, parallel.state_sharding(mesh))
    step_fn = train.jit_ensemble_step(spec, mesh, state)
    for batch in batches:
      state, _ = step_fn(state, parallel.global_batch(batch, mesh))
    return state

  results, layout = {}, {}
  for m, d in MESHES:
    state = run(initial, parallel.create_mesh(member_devices=m))
    kernel = jax.tree.leaves(state.params["vae"])[0]
    layout[f"{m}x{d}"] = dict(spec=[str(a) for a in kernel.sharding.spec],
                              shards=sorted({(s.index[0].start or 0, s.data.shape[0]) for s in kernel.addressable_shards}),
                              devices=len(kernel.sharding.device_set), beta=np.asarray(state.hparams["beta"]).tolist(),
                              beta_shards=[s.data.shape[0] for s in state.hparams["beta"].addressable_shards])
    results[f"{m}x{d}"] = state
  mesh = parallel.create_mesh(num_devices=1)
  step_fn = train.jit_ensemble_step(spec, mesh, jax.tree.map(lambda a: a[:1], initial))  # One compilation for all 8.
  for member in range(8):  # A separate run: the member's seed and β alone.
    single = jax.tree.map(lambda a, member=member: a[member : member + 1], initial)
    state = jax.device_put(single, parallel.state_sharding(mesh))
    for batch in batches:
      state, _ = step_fn(state, parallel.global_batch(batch[member : member + 1], mesh))
    results[f"single{member}"] = state
  arrays = {f"{name}/{i}": np.asarray(leaf) for name, state in results.items()
            for i, leaf in enumerate(jax.tree.leaves(state.params))}
  np.savez(os.path.join(out, "params.npz"), **arrays)
  with open(os.path.join(out, "layout.json"), "w") as f:
    json.dump(layout, f)


def test_member_sharded_meshes_train_the_same_ensemble(tmp_path):
  """8 members on meshes 8×1, 4×2, 2×4 and 1×8 (the unsharded ensemble: state replicated, batch
  split): the state really split over 'members', and the same parameters on every mesh and as
  8 separate runs on one device, to float32 rounding (which Adam's first steps, normalising
  near-zero gradients, magnify to ~1e-5 here; members differ by ~1e-1, so a mix-up shows)."""
  proc = subprocess.run([sys.executable, __file__, "meshes", str(tmp_path)], cwd=REPO, env=_env(8),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  layout = json.loads((tmp_path / "layout.json").read_text())
  for m, d in MESHES:
    got = layout[f"{m}x{d}"]
    assert got["spec"] == ["members"] and got["devices"] == 8
    assert got["shards"] == [[i * 8 // m, 8 // m] for i in range(m)]  # Member blocks, each on its own devices.
    assert set(got["beta_shards"]) == {8 // m} and got["beta"] == [1.0 + i for i in range(8)]
  params = np.load(tmp_path / "params.npz")
  leaves = sorted({int(k.split("/")[1]) for k in params})
  trained = False
  for i in leaves:
    reference = params[f"1x8/{i}"]
    for m, d in MESHES[:-1]:
      np.testing.assert_allclose(params[f"{m}x{d}/{i}"], reference, rtol=1e-3, atol=1e-4, err_msg=f"mesh {m}x{d}")
    for member in range(8):
      np.testing.assert_allclose(params[f"single{member}/{i}"][0], reference[member], rtol=1e-3, atol=1e-4)
    trained |= not np.allclose(reference[0], reference[1])
  assert trained  # Members differ (seeds and β), so a mix-up of members would show.


def test_mesh_errors_say_what_to_fix():
  with pytest.raises(ValueError, match="member_devices=3 does not divide the 4 device"):
    parallel.create_mesh(member_devices=3)
  with pytest.raises(ValueError, match="does not divide ensemble.num_members=6"):
    parallel.create_mesh(member_devices=4, num_members=6)
  assert dict(parallel.create_mesh(member_devices=0, num_members=4).shape) == {"members": 1, "data": 4}  # CPU.
  assert parallel.default_member_devices(64, 8, "tpu") == 8 and parallel.default_member_devices(6, 8, "gpu") == 2
  assert parallel.local_block(parallel.create_mesh(member_devices=2), 4, 16) == (slice(0, 4), slice(0, 16))


SHARDED = ["--config.ensemble.num_members=2", "--config.ensemble.betas=(2.,7.)", "--config.parallel.member_devices=2",
           "--config.eval.final=none", "--config.eval.figures=False"]


def _main(workdir, *args, env, check=True):
  cmd = [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", f"--workdir={workdir}", *SHARDED, *args]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  if check:
    assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def _restored(workdir, steps):
  """(step, parameter leaves) of workdir's latest checkpoint, restored here (4 devices, mesh 2×2)."""
  from vae_jax import rundir

  config = _load_test_config([("ensemble.num_members", 2), ("ensemble.betas", (2.0, 7.0)),
                              ("parallel.member_devices", 2), ("num_train_steps", steps)])
  run = rundir.restore_run(config, str(workdir))
  kernel = jax.tree.leaves(run.params)[0]
  assert kernel.sharding.spec == parallel.state_sharding(run.mesh).spec and len(kernel.addressable_shards) == 4
  return run.step, [np.asarray(x) for x in jax.tree.leaves(run.state.params)]


def test_kill_9_and_resume_of_a_member_sharded_run_is_exact(tmp_path):
  env = _env(4)
  args = ["--config.num_train_steps=30", "--config.checkpoint_every_steps=10"]
  _main(tmp_path / "straight", *args, env=env)
  cmd = [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", f"--workdir={tmp_path / 'killed'}",
         *SHARDED, *args, "--config.data.prefetch=1"]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = tmp_path / "killed" / "checkpoints"
  for _ in range(4800):
    if ckpt_dir.exists() and any(d.isdigit() for d in os.listdir(ckpt_dir)):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert min(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) < 30  # Killed mid-run.
  _main(tmp_path / "killed", *args, env=env)
  (step_a, straight), (step_b, resumed) = _restored(tmp_path / "straight", 30), _restored(tmp_path / "killed", 30)
  assert step_a == step_b == 30
  for a, b in zip(straight, resumed):
    np.testing.assert_array_equal(a, b)
  # Restored onto another device count (one device here, four when saved): the same values.
  from vae_jax import checkpoints, rundir
  from vae_jax.data import get_dataset

  config = _load_test_config([("ensemble.num_members", 2), ("ensemble.betas", (2.0, 7.0))])
  *_, target = rundir.build(config, get_dataset(config.data), 1)
  one = jax.device_put(target, parallel.state_sharding(parallel.create_mesh(num_devices=1)))
  ckpt = checkpoints.Checkpointer(str(tmp_path / "killed" / "checkpoints"))
  restored = ckpt.restore_latest(one)
  ckpt.close()
  assert jax.tree.leaves(restored.params)[0].sharding.num_devices == 1
  for a, b in zip(straight, jax.tree.leaves(restored.params)):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_evaluation_encodes_a_member_sharded_state_where_it_lives(test_config):
  from vae_jax import evaluate, rundir
  from vae_jax.data import get_dataset
  from vae_jax.evaluation import encode

  config = test_config
  config.ensemble.num_members = 2
  dataset = get_dataset(config.data)
  model, objective, _, state = rundir.build(config, dataset, len(dataset))
  sharded_mesh, replicated_mesh = parallel.create_mesh(member_devices=2), parallel.create_mesh()
  params = jax.device_put(state.params["vae"], parallel.state_sharding(sharded_mesh))
  assert {s.data.shape[0] for s in jax.tree.leaves(params)[0].addressable_shards} == {1}
  encoder = encode.model_encoder(model)
  x = dataset.images(np.arange(8))
  fn = encode.make_encode_fn(encoder, sharded_mesh)
  assert "all-gather" not in fn.lower(params, x).compile().as_text()  # No member's parameters move.
  means, log_vars = fn(params, x)
  assert means.sharding.spec == parallel.batch_sharding(sharded_mesh).spec
  want = encode.make_encode_fn(encoder, replicated_mesh)(jax.device_put(params, parallel.replicated(replicated_mesh)), x)
  np.testing.assert_allclose(np.asarray(means), np.asarray(want[0]), rtol=1e-5, atol=1e-6)
  results = evaluate.evaluate_ensemble(config.eval, model, objective, params, dataset, sharded_mesh, full=False, seed=0)
  assert [r.member for r in results] == [0, 1] and all(0 <= r.metrics["mig"]["value"] <= 1 for r in results)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_checkpoint_and_resume_like_one(tmp_path):
  """2 processes × 2 CPU devices (mesh 2×2: one member per process) equal 1 process × 4 devices."""
  _main(tmp_path / "one", "--config.num_train_steps=6", env=_env(4))

  def two_processes(*args):
    env = {**_env(2), "JAX_COORDINATOR_ADDRESS": f"localhost:{_free_port()}", "JAX_NUM_PROCESSES": "2"}
    cmd = [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", f"--workdir={tmp_path / 'two'}",
           *SHARDED, "--config.multi_host=True", *args]
    procs = [subprocess.Popen(cmd, cwd=REPO, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
      assert p.returncode == 0, err[-4000:]
    return [err for _, err in outs]

  logs = two_processes("--config.num_train_steps=3")  # Trains, checkpoints at step 3 ...
  assert all("JAX process" in log and "'members': 2, 'data': 2" in log for log in logs)
  logs = two_processes("--config.num_train_steps=6", "--config.eval.final=subset")  # ... and resumes to 6.
  assert all("Restored the checkpoint of step 3" in log for log in logs)
  metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
  assert metrics["resumed_from_step"] == 3 and len(metrics["members"]) == 2
  assert all(0 <= m["mig"]["value"] <= 1 for m in metrics["members"])
  (step_a, one), (step_b, two) = _restored(tmp_path / "one", 6), _restored(tmp_path / "two", 6)
  assert step_a == step_b == 6
  for a, b in zip(one, two):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
  if sys.argv[1] == "meshes":
    _train_on_meshes(sys.argv[2])
