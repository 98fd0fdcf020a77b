"""Feature names shared by ExampleGen, Transform, Trainer, Evaluator and serving.

One place for every key, so a rename cannot split the pipeline in two.
"""

# Raw tf.Example features written by the image ExampleGen.
IMAGE = "image"  # encoded bytes (JPEG/PNG/BMP/GIF as TensorFlow can decode them)
FILENAME = "filename"  # path relative to the input folder, UTF-8
HEIGHT = "height"
WIDTH = "width"
CHANNELS = "channels"  # channels of the original file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)
FORMAT = "format"  # original container format as PIL names it: JPEG, PNG, TIFF, ...

# Transformed features produced by preprocessing_fn.
HR = "hr"  # float32 [tiles, hr_size, hr_size, 3] in [0, 1]
LR = "lr"  # float32 [tiles, hr_size/scale, hr_size/scale, 3] in [0, 1], bicubic-degraded HR
