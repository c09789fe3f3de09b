"""Kill -9 a training run at random moments, resume it each time, compare with an uninterrupted run.

    python benchmarks/fault_injection.py [--kills=20] [--steps=60] [--seed=0]

Trains configs/test.py (tiny MLP β-TCVAE, checkpoints every 3 steps, asynchronous
saves) once straight through, then again in the same workdir under repeated SIGKILLs
at random moments (start-up, training, saving), restarting the same command after each
kill, until the run finishes. Prints the number of kills, where they landed, and
whether every parameter, optimiser moment and the step of the final checkpoint are
bit-equal to the uninterrupted run's. Bounded in time: each attempt waits at most
--max-wait seconds before it is killed.
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
  parser.add_argument("--max-wait", type=float, default=25.0, help="latest kill time after a start (s)")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  with tempfile.TemporaryDirectory() as tmp:
    straight, killed = os.path.join(tmp, "straight"), os.path.join(tmp, "killed")
    t0 = time.time()
    subprocess.run(command(straight, args.steps), cwd=REPO, env=env, check=True, capture_output=True)
    clean_seconds = time.time() - t0
    kills, finished, landed = 0, False, []
    while not finished:
      proc = subprocess.Popen(command(killed, args.steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
      if kills < args.kills:
        delay = rng.uniform(0.5, min(args.max_wait, clean_seconds))
        try:
          proc.wait(timeout=delay)
          finished = proc.returncode == 0
        except subprocess.TimeoutExpired:
          proc.send_signal(signal.SIGKILL)
          proc.wait()
          kills += 1
          ckpt_dir = os.path.join(killed, "checkpoints")
          steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(ckpt_dir) else []
          landed.append(f"{delay:.1f}s→ckpt {steps[-1] if steps else '-'}")
      else:
        finished = proc.wait() == 0
        if not finished:
          print("The resumed run failed after the kills.", file=sys.stderr)
          return 1
    a, b = final_state(straight, args.steps), final_state(killed, args.steps)
    equal = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(f"{kills} SIGKILLs ({', '.join(landed)}); final step {int(b.step[0])} vs {int(a.step[0])}; "
          f"every leaf bit-equal to the uninterrupted run: {equal}")
    return 0 if equal and int(b.step[0]) == args.steps else 1


if __name__ == "__main__":
  sys.exit(main())
