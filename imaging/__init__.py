"""Images as tensors and files: decoding and checking, bicubic degradation, tiles, luma.

Shared by the pipeline's components (ExampleGen, Transform, the networks) and by
inference; it imports only superres_tfx.core.
"""
