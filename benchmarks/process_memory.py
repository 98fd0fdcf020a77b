"""A process's resident memory, read from /proc (Linux): now, and its peak.

Standard library only, as benchmarks/output.py.
"""
import os


def status_mb(pid="self", field: str = "VmRSS") -> float:
  """A memory field of /proc/<pid>/status in MB: VmRSS (now) or VmHWM (the peak)."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError(f"no {field} for process {pid}")


def tree_mb(pid: int) -> float:
  """VmRSS of `pid` and of every process descended from it, in MB (shared pages counted
  in each: an upper bound). Processes that end while being read are skipped."""
  children = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          # The parent pid is the 2nd field after the parenthesised command name.
          parent = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      children.setdefault(parent, []).append(int(entry))
  total, todo = 0.0, [pid]
  while todo:
    current = todo.pop()
    try:
      total += status_mb(current)
    except (OSError, RuntimeError):
      continue
    todo.extend(children.get(current, []))
  return total


def reset_peak(pid="self") -> None:
  """Resets VmHWM to the current resident size."""
  with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")
