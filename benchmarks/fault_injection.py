"""Kill -9 a training run at random moments, resume it each time, compare with an uninterrupted run.

    python benchmarks/fault_injection.py [--kills=20] [--steps=60] [--seed=0]

Trains configs/test.py (tiny MLP β-TCVAE, checkpoints every 3 steps, asynchronous
saves) once straight through, then again under repeated SIGKILLs at random moments
(start-up, training, saving), restarting the same command in the same workdir after
each kill until the run finishes; a run that finishes before --kills kills have
landed is followed by another in a fresh workdir. Prints the number of kills, where
they landed, and whether every parameter, optimiser moment and the step of each
killed run's final checkpoint are bit-equal to the uninterrupted run's. Each attempt is killed at a
uniform moment up to --max-wait seconds after its start (default: the uninterrupted
run's duration, so kills fall in start-up, training and saving in proportion to the
time each takes); the output lists, per kill, the moment and the newest checkpoint
on disk after it.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from vae_jax import checkpoints, configlib, rundir  # noqa: E402
from vae_jax.data import get_dataset  # noqa: E402


def command(workdir: str, steps: int) -> list[str]:
  return [sys.executable, "-m", "vae_jax.main", "--config=configs/test.py", f"--workdir={workdir}",
          f"--config.num_train_steps={steps}", "--config.eval.final=none", "--config.eval.figures=False",
          "--config.checkpoint_every_steps=3", "--config.log_every_steps=2"]


def final_state(workdir: str, steps: int):
  """The restored state of the workdir's latest checkpoint, as NumPy leaves."""
  config = configlib.shrink_to_test_size(configlib.base_config())
  config.batch_size = 16
  *_, target = rundir.build(config, get_dataset(config.data), 1)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(target)
  ckpt.close()
  return jax.tree.map(np.asarray, state)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--max-wait", type=float, default=None,
                      help="latest kill time after a start (s); default: the uninterrupted run's duration")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  with tempfile.TemporaryDirectory() as tmp:
    straight, killed = os.path.join(tmp, "straight"), os.path.join(tmp, "killed")
    t0 = time.time()
    subprocess.run(command(straight, args.steps), cwd=REPO, env=env, check=True, capture_output=True)
    clean_seconds = time.time() - t0
    print(f"uninterrupted run: {clean_seconds:.1f} s; kills at uniform moments up to "
          f"{min(args.max_wait or clean_seconds, clean_seconds):.1f} s after each start", flush=True)
    # Episodes: a fresh workdir trained to the end under kills; a new episode starts
    # whenever one finishes before its next kill, until --kills kills have landed.
    kills, landed, episodes = 0, [], []
    while kills < args.kills or not episodes or not episodes[-1][1]:
      workdir = os.path.join(tmp, f"killed{len(episodes)}")
      episode_kills, finished = 0, False
      while not finished:
        proc = subprocess.Popen(command(workdir, args.steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.5, min(args.max_wait or clean_seconds, clean_seconds))
        try:
          proc.wait(timeout=delay if kills < args.kills else None)
        except subprocess.TimeoutExpired:
          proc.send_signal(signal.SIGKILL)
          proc.wait()
          kills += 1
          episode_kills += 1
          ckpt_dir = os.path.join(workdir, "checkpoints")
          steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(ckpt_dir) else []
          landed.append(f"{delay:.1f}s→ckpt {steps[-1] if steps else '-'}")
          continue
        if proc.returncode != 0:
          print(f"A resumed run failed (exit {proc.returncode}) after {episode_kills} kills.", file=sys.stderr)
          return 1
        finished = True
      episodes.append((workdir, True, episode_kills))
      print(f"run {len(episodes)} finished after {episode_kills} kill(s); {kills} in all", flush=True)
    a = final_state(straight, args.steps)
    equal, final_steps = [], []
    for workdir, _, _ in episodes:
      b = final_state(workdir, args.steps)
      final_steps.append(int(b.step[0]))
      equal.append(all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
    print(f"{kills} SIGKILLs over {len(episodes)} run(s) trained to the end "
          f"(kills per run: {[k for _, _, k in episodes]}); kill moments and newest checkpoint after each: "
          f"{', '.join(landed)}")
    print(f"final steps {final_steps} vs {int(a.step[0])}; every leaf bit-equal to the uninterrupted run, "
          f"per run: {equal}")
    return 0 if all(equal) and set(final_steps) == {args.steps} else 1


if __name__ == "__main__":
  sys.exit(main())
