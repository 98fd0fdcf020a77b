"""Benchmarks of the pipeline's models; run them as `python -m benchmarks.<name>`."""
