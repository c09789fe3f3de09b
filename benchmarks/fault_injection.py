"""Kill -9 a training run at random moments, resume it each time, compare with an uninterrupted run.

    python benchmarks/fault_injection.py [--kills=20] [--steps=60] [--seed=0] [--startup-share=0.2]

Trains configs/test.py (tiny MLP β-TCVAE, checkpoints every 3 steps, asynchronous
saves) once straight through, then again under repeated SIGKILLs at random moments
(start-up, training, saving), restarting the same command in the same workdir after
each kill until the run finishes; a run that finishes before --kills kills have
landed is followed by another in a fresh workdir. Prints the number of kills, where
they landed, and whether every parameter, optimiser moment and the step of each
killed run's final checkpoint are bit-equal to the uninterrupted run's. A share of the kills (--startup-share) falls
in start-up; the others wait until the attempt has written a new checkpoint and
kill it up to 1.5 s later, while it trains with asynchronous saves in flight (so
kills land in training and saving whatever the machine's load). The output lists
each kill's phase and the newest checkpoint before and after it.
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


def newest_checkpoint(workdir: str) -> int:
  """The newest finalised checkpoint step in workdir (-1 if none)."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
  return max(steps, default=-1)


def kill_moment(proc: subprocess.Popen, workdir: str, rng: random.Random, startup_share: float,
                startup_wait: float) -> str | None:
  """Kills `proc` at a random moment and says where it landed; None if it finished first.

  With probability `startup_share` the kill falls uniformly in the first `startup_wait`
  seconds (start-up: imports, restore, compilation); otherwise it waits until the run has
  written a new checkpoint (training is under way, with checkpoints every 3 steps and
  asynchronous saves in flight) and kills it 0–1.5 s later.
  """
  before = newest_checkpoint(workdir)
  if rng.random() < startup_share:
    phase, deadline = "start-up", time.time() + rng.uniform(0.5, startup_wait)
    while time.time() < deadline and proc.poll() is None:
      time.sleep(0.05)
  else:
    phase = "training"
    while newest_checkpoint(workdir) <= before and proc.poll() is None:
      time.sleep(0.05)
    deadline = time.time() + rng.uniform(0.0, 1.5)
    while time.time() < deadline and proc.poll() is None:
      time.sleep(0.02)
  if proc.poll() is not None:
    return None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return f"{phase} (newest checkpoint {before}→{newest_checkpoint(workdir)})"


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
  parser.add_argument("--startup-share", type=float, default=0.2, help="share of kills aimed at start-up")
  parser.add_argument("--startup-wait", type=float, default=20.0, help="start-up kills fall in the first N s")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  with tempfile.TemporaryDirectory() as tmp:
    straight = os.path.join(tmp, "straight")
    t0 = time.time()
    subprocess.run(command(straight, args.steps), cwd=REPO, env=env, check=True, capture_output=True)
    clean_seconds = time.time() - t0
    print(f"uninterrupted run: {clean_seconds:.1f} s", flush=True)
    # Episodes: a fresh workdir trained to the end under kills; a new episode starts
    # whenever one finishes before its next kill, until --kills kills have landed.
    kills, landed, episodes = 0, [], []
    while kills < args.kills or not episodes:
      workdir = os.path.join(tmp, f"killed{len(episodes)}")
      episode_kills = 0
      while True:
        proc = subprocess.Popen(command(workdir, args.steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        where = kill_moment(proc, workdir, rng, args.startup_share, args.startup_wait) if kills < args.kills else None
        if where is not None:
          kills += 1
          episode_kills += 1
          landed.append(where)
          continue
        if proc.wait() != 0:
          print(f"A resumed run failed (exit {proc.returncode}) after {episode_kills} kills.", file=sys.stderr)
          return 1
        break
      episodes.append((workdir, episode_kills))
      print(f"run {len(episodes)} finished after {episode_kills} kill(s); {kills} in all", flush=True)
    print(f"{kills} SIGKILLs over {len(episodes)} run(s) trained to the end "
          f"(kills per run: {[k for _, k in episodes]}); "
          f"{sum(w.startswith('training') for w in landed)} during training, "
          f"{sum(w.startswith('start-up') for w in landed)} in start-up:")
    for where in landed:
      print(f"  {where}")
    a = final_state(straight, args.steps)
    equal, final_steps = [], []
    for workdir, _ in episodes:
      b = final_state(workdir, args.steps)
      final_steps.append(int(b.step[0]))
      equal.append(all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
    print(f"final steps {final_steps} vs {int(a.step[0])}; every leaf bit-equal to the uninterrupted run, "
          f"per run: {equal}")
    return 0 if all(equal) and set(final_steps) == {args.steps} else 1


if __name__ == "__main__":
  sys.exit(main())
