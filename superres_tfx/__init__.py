"""superres-tfx: a TFX pipeline that trains, evaluates and ships super-resolution models.

Every installed module lives in this namespace; setup.py maps the repository's folders
into it, from the top layer down (README, "Layout"):

  superres_tfx            the command line and its tools (this folder)
  superres_tfx.kubeflow   Kubeflow runner, compile options, submission
  superres_tfx.pipeline   the DAG, its configuration, the local runner
  superres_tfx.components TFX components and the module files they run
  superres_tfx.serving    the model server, its launcher and client
  superres_tfx.inference  running an exported model on photos of any size
  superres_tfx.imaging    image decoding and image operations
  superres_tfx.pretrained the shipped models, one per scale, and finding them
  superres_tfx.core       names, folders and error types (no TensorFlow)

A module imports only from its own layer or the ones below (tests/test_layers.py).
"""
