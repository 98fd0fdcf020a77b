"""This machine's float32 throughput on the work the networks do, as JSON.

Multiply-adds per second (GMAC/s; 1 multiply-add = 2 FLOP) of a square matmul, with
TensorFlow and with numpy, and of a 3x3 convolution of the shape the networks run, with
TensorFlow; each library keeps its default threading (all cores). Every rate is given
per wall-clock second (what the machine delivered, other work on it included) and per
second of this process's CPU time (what a busy core delivers: steadier on a shared
machine, and what benchmarks/serving.py divides a model's throughput by).

  python -m benchmarks.hardware [--intra-op N] [--inter-op N] [--out probe.json]

Run it with the serving environment's Python to probe the server's TensorFlow. Also
home of the round-based timer the serving benchmark's speed section shares.
"""
import argparse
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, NamedTuple

import numpy as np

from benchmarks import output

MATMUL_SIDE = 2048
CONV_INPUT = (1, 256, 256, 64)  # [N, H, W, C]: a width-64 layer on a 256x256 input
CONV_KERNEL = (3, 3, 64, 64)
ROUNDS = 3
# A round repeats its call for at least this long, so the 10 ms ticks of another
# process's CPU clock (/proc/<pid>/stat) stay a small part of what a round measures.
ROUND_SECONDS = 0.5
GIGA = 1e9
WORKING_SHARE = 0.25  # of the busiest thread's CPU time, for a thread to count as working


class Round(NamedTuple):
  calls: int
  wall_s: float
  cpu_s: float


def process_cpu_seconds(pid: int) -> float:
  """User + system CPU time of a whole process (all its threads) so far."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
  utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
  return (utime + stime) / os.sysconf("SC_CLK_TCK")


def measure(call: Callable[[], object], cpu_clock: Callable[[], float] = time.process_time,
            rounds: int = ROUNDS, round_seconds: float = ROUND_SECONDS) -> List[Round]:
  """One untimed warm-up call (tracing, allocation), then `rounds` timed rounds.

  `cpu_clock` reads the CPU time of whichever process does the work.
  """
  call()
  results = []
  for _ in range(rounds):
    calls, wall_start, cpu_start = 0, time.perf_counter(), cpu_clock()
    while calls == 0 or time.perf_counter() - wall_start < round_seconds:
      call()
      calls += 1
    results.append(Round(calls, time.perf_counter() - wall_start, cpu_clock() - cpu_start))
  return results


def median_per_call(rounds: List[Round], field: str) -> float:
  """Median over rounds of the seconds one call took (wall_s or cpu_s)."""
  return statistics.median(getattr(r, field) / r.calls for r in rounds)


def rates(macs_per_call: float, rounds: List[Round]) -> Dict[str, float]:
  """GMAC/s per wall-clock second (best and median round) and per CPU second."""
  per_wall = [macs_per_call * r.calls / r.wall_s / GIGA for r in rounds]
  return {"gmac_per_s_best": round(max(per_wall), 1),
          "gmac_per_s_median": round(statistics.median(per_wall), 1),
          "gmac_per_cpu_s": round(macs_per_call / median_per_call(rounds, "cpu_s") / GIGA, 1),
          # CPU seconds per wall second: how many cores the call kept busy.
          "cores_busy": round(median_per_call(rounds, "cpu_s")
                              / median_per_call(rounds, "wall_s"), 2)}


def _thread_ticks() -> Dict[str, int]:
  """CPU clock ticks so far of each thread of this process."""
  ticks = {}
  for thread in os.listdir("/proc/self/task"):
    try:
      with open(f"/proc/self/task/{thread}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
      continue  # ended meanwhile
    ticks[thread] = int(fields[11]) + int(fields[12])
  return ticks


def _probed(shape: str, macs_per_call: float, call: Callable[[], object]) -> Dict[str, object]:
  before = _thread_ticks()
  rounds = measure(call)
  spent = [ticks - before.get(thread, 0) for thread, ticks in _thread_ticks().items()]
  # Threads that shared the work: on a shared machine they may get fewer cores than
  # there are of them (cores_busy), which is the machine's noise, not a thread setting.
  working = sum(1 for ticks in spent if ticks >= WORKING_SHARE * max(spent))
  return {"shape": shape, **rates(macs_per_call, rounds), "threads_working": working}


def _tf_matmul(side: int) -> Dict[str, object]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a, b = tf.random.normal([side, side]), tf.random.normal([side, side])
  # Eager ops on the CPU return once computed: nothing to wait for.
  return _probed(f"{side}x{side} @ {side}x{side}", side ** 3, lambda: tf.linalg.matmul(a, b))


def _numpy_matmul(side: int) -> Dict[str, object]:
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((side, side), dtype=np.float32) for _ in range(2))
  return _probed(f"{side}x{side} @ {side}x{side}", side ** 3, lambda: a @ b)


def _tf_conv(input_shape, kernel_shape) -> Dict[str, object]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  images, kernel = tf.random.normal(input_shape), tf.random.normal(kernel_shape)
  n, h, w, _ = input_shape
  macs = n * h * w * int(np.prod(kernel_shape))  # 'same' padding: one kernel per output pixel
  return _probed(f"{list(input_shape)} * {list(kernel_shape)}, same padding", macs,
                 lambda: tf.nn.conv2d(images, kernel, 1, "SAME"))


def probe() -> Dict[str, object]:
  """The three probes in this process, with the library versions and TensorFlow threads
  (0: TensorFlow's choice) that ran them."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return {"unit": "GMAC/s: 1e9 float32 multiply-adds per second (1 multiply-add = 2 FLOP)",
          "python": platform.python_version(), "tensorflow": tf.__version__,
          "numpy": np.__version__,
          "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                         "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
          "tf_matmul": _tf_matmul(MATMUL_SIDE),
          "numpy_matmul": _numpy_matmul(MATMUL_SIDE),
          "tf_conv3x3": _tf_conv(CONV_INPUT, CONV_KERNEL)}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--intra-op", type=int, default=0,
                      help="TensorFlow's intra-op threads (0: its choice)")
  parser.add_argument("--inter-op", type=int, default=0,
                      help="TensorFlow's inter-op threads (0: its choice)")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  set_tf_threads(args.intra_op, args.inter_op)
  output.emit(probe(), args.out)


def set_tf_threads(intra_op: int, inter_op: int) -> None:
  """Before TensorFlow runs its first op: later it keeps the threads it started with."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(intra_op)
  tf.config.threading.set_inter_op_parallelism_threads(inter_op)


if __name__ == "__main__":
  main()
