"""Where a benchmark's JSON result goes: stdout, and optionally a file.

Standard library only: benchmarks/ingest_memory.py imports this in the processes whose
memory it measures.
"""
import json
import os
from typing import Optional


def write_text(text: str, out: str) -> None:
  """Writes `text` and a final newline to `out`, creating its folder first."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w", encoding="utf-8") as f:
    f.write(text + "\n")


def emit(result: dict, out: Optional[str]) -> None:
  """Prints `result` as indented JSON and, given `out`, writes the same text there.

  Printed first, so a long run's result is not lost to an unwritable `out`.
  """
  text = json.dumps(result, indent=2)
  print(text)
  if out:
    write_text(text, out)
