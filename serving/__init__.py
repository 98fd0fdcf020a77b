"""The model server: TensorFlow Serving's REST and gRPC protocols for pushed models.

Runs in its own environment (.venv-serving: TensorFlow 2.21, KServe), started with
`python -m superres_tfx.serving`. Its `launcher` and `client` modules are importable from
the pipeline environment; the rest needs the serving environment.
"""
