"""Plain-text tables for the terminal: the run summary and evaluation results."""
from typing import Dict, List, Sequence


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
  return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _scores_rows(metrics: Dict) -> List[List[str]]:
  return [
      ["model", f"{metrics['psnr_model']:.2f}", f"{metrics['ssim_model']:.4f}"],
      ["bicubic", f"{metrics['psnr_bicubic']:.2f}", f"{metrics['ssim_bicubic']:.4f}"],
      ["gain", f"{metrics['psnr_model'] - metrics['psnr_bicubic']:+.2f}",
       f"{metrics['ssim_model'] - metrics['ssim_bicubic']:+.4f}"],
  ]


def format_summary(summary) -> str:
  parts = ["", "Run summary", "==========="]
  # The progress lines above already name every component; the table only when some
  # component did not finish (failed, skipped by the data checks, still running).
  if any(outcome not in ("complete", "cached") for outcome in summary.outcomes.values()):
    parts.append(table([[node, outcome] for node, outcome in summary.outcomes.items()],
                       ["component", "outcome"]))
  parts.append(f"Reused from cache: {summary.cached_count} of {len(summary.outcomes)} components")
  if summary.ingested is not None:
    parts.append(f"Images ingested: {summary.ingested}; quarantined: {len(summary.quarantined)}")
  for entry in summary.quarantined:
    parts.append(f"  quarantined {entry['path']}: {entry['reason']}")
  if summary.anomalies:
    parts.append("Data anomalies (training skipped; fix the data or schemas/schema.pbtxt):")
    parts.extend(f"  {line}" for line in summary.anomalies)
  if summary.metrics:
    m = summary.metrics
    parts.append(f"Evaluation on {m['images']} tiles of the {m.get('split', 'eval')} split at "
                 f"x{m['scale']} (Y channel, BT.601, border cropped):")
    parts.append(table(_scores_rows(m), ["", "PSNR dB", "SSIM"]))
  if summary.blessed is not None:
    reason = f" ({summary.metrics['reason']})" if summary.metrics else ""
    parts.append(f"Blessed: {'yes' if summary.blessed else 'no'}{reason}")
  if summary.blessed and summary.infra_blessed is not None:
    verdict = "passed" if summary.infra_blessed else "failed"
    parts.append(f"Serving check: {verdict} ({summary.infra_reason})")
  if summary.pushed_dir:
    parts.append(f"Pushed: {summary.pushed_dir}")
  elif summary.blessed is False:
    parts.append("Pushed: nothing (the model was not blessed)")
  elif summary.infra_blessed is False:
    parts.append("Pushed: nothing (the model failed the serving check)")
  if summary.report_path:
    parts.append(f"Report (pictures, per-image scores, tuner trials): {summary.report_path}")
  if summary.log_path:
    parts.append(f"Full log: {summary.log_path}")
  return "\n".join(parts)


def format_evaluation(result: Dict) -> str:
  rows = [[item["file"], f"{item['psnr_model']:.2f}", f"{item['psnr_bicubic']:.2f}",
           f"{item['psnr_model'] - item['psnr_bicubic']:+.2f}", f"{item['ssim_model']:.4f}",
           f"{item['ssim_bicubic']:.4f}"] for item in result["per_image"]]
  rows.append(["mean", f"{result['psnr_model']:.2f}", f"{result['psnr_bicubic']:.2f}",
               f"{result['psnr_model'] - result['psnr_bicubic']:+.2f}",
               f"{result['ssim_model']:.4f}", f"{result['ssim_bicubic']:.4f}"])
  text = table(rows, ["image", "PSNR model", "PSNR bicubic", "gain", "SSIM model",
                      "SSIM bicubic"])
  for item in result.get("skipped", []):
    text += f"\nskipped {item.get('file', item)}: {item.get('reason', '')}"
  return f"x{result['scale']}, Y channel (BT.601), {result['scale']} px border cropped\n{text}"
