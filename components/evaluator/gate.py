"""The blessing gate: when a candidate model may replace the one serving under its name.

Plain Python (no TensorFlow), so the pipeline's configuration can check a profile's
thresholds against the project's limit without loading the Evaluator.
"""
import dataclasses
from typing import Optional, Tuple

# Whatever the profile, a model replaces the one serving under its name only if its
# PSNR is at most this much lower (measurement noise between runs). A profile may ask
# for a smaller tolerance, never a larger one.
MAX_REGRESSION_DB = 0.05


@dataclasses.dataclass
class Scores:
  """Mean scores over the evaluated images (Transform tiles, in the pipeline)."""
  images: int
  psnr_model: float
  ssim_model: float
  psnr_bicubic: float
  ssim_bicubic: float

  @property
  def gain_db(self) -> float:
    return self.psnr_model - self.psnr_bicubic


LAST_BLESSED = "the last blessed model"
SHIPPED = "the shipped model"


def blessing_verdict(candidate: Scores, baseline: Optional[Scores], min_gain_db: float,
                     max_regression_db: float,
                     baseline_name: str = LAST_BLESSED) -> Tuple[bool, str]:
  """Blessed only when the model beats bicubic by the margin and does not regress
  against the baseline (the last blessed model of its name, or the shipped one)."""
  if candidate.gain_db < min_gain_db:
    return False, (f"gain over bicubic {candidate.gain_db:+.2f} dB is below the required "
                   f"{min_gain_db:+.2f} dB")
  if baseline is not None and candidate.psnr_model < baseline.psnr_model - max_regression_db:
    return False, (f"PSNR {candidate.psnr_model:.2f} dB regresses against {baseline_name}'s "
                   f"{baseline.psnr_model:.2f} dB (tolerance {max_regression_db} dB)")
  against = "; no model blessed under this name before" if baseline is None else (
      f"; {baseline_name.removeprefix('the ')} {baseline.psnr_model:.2f} dB")
  return True, (f"gain over bicubic {candidate.gain_db:+.2f} dB (required "
                f"{min_gain_db:+.2f} dB){against}")
