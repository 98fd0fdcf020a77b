"""A process's resident memory, read from /proc (Linux): now, and its peak.

Standard library only, as benchmarks/output.py.
"""


def status_mb(pid="self", field: str = "VmRSS") -> float:
  """A memory field of /proc/<pid>/status in MB: VmRSS (now) or VmHWM (the peak)."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid="self") -> None:
  """Resets VmHWM to the current resident size."""
  with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")
