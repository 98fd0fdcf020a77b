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
# Each a variable-length list of PNG-encoded 8-bit RGB tiles, one pair per kept tile.
HR = "hr"  # hr_size x hr_size tiles at the photo's native resolution
LR = "lr"  # hr_size/scale per side: the bicubic degradation of the HR tile, in 8 bits
