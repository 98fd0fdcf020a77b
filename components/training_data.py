"""tf.data input pipelines over Transform's output, for the Tuner and the Trainer.

Training draws random aligned LR/HR patches with the 8 flips/rotations; nearly flat
patches (sky, walls) teach nothing and are mostly skipped. Validation uses the whole
fixed-size transformed tiles, so its PSNR is comparable across runs.
"""
import tensorflow as tf
import tensorflow_transform as tft

from superres_tfx.core import errors
from superres_tfx.components import features

# A patch whose HR standard deviation is below this is "flat" and kept only rarely.
FLAT_PATCH_STD = 0.02
FLAT_PATCH_KEEP_PROBABILITY = 0.1
SHUFFLE_BUFFER = 256
EVAL_BATCH_SIZE = 4  # whole transformed images per validation batch


def _load(file_pattern, tf_transform_output: tft.TFTransformOutput) -> tf.data.Dataset:
  files = tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else [
      f for pattern in file_pattern for f in tf.io.gfile.glob(pattern)]
  if not files:
    raise errors.SuperresError(f"No transformed examples match {file_pattern}.")
  spec = tf_transform_output.transformed_feature_spec()
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  # Transform writes one file per split: workers must shard by record, not by file.
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  dataset = dataset.with_options(options)
  dataset = dataset.map(lambda record: tf.io.parse_single_example(record, spec))
  # One record is one image's grid of tiles: tiles are the unit from here on.
  return dataset.map(lambda ex: (ex[features.LR], ex[features.HR])).unbatch().cache()


def random_patch(lr, hr, lr_patch: int, scale: int):
  """An aligned random crop: lr_patch^2 LR pixels and the HR pixels they came from."""
  lr_shape = tf.shape(lr)
  top = tf.random.uniform([], 0, lr_shape[0] - lr_patch + 1, dtype=tf.int32)
  left = tf.random.uniform([], 0, lr_shape[1] - lr_patch + 1, dtype=tf.int32)
  lr_crop = lr[top:top + lr_patch, left:left + lr_patch, :]
  hr_crop = hr[top * scale:(top + lr_patch) * scale,
               left * scale:(left + lr_patch) * scale, :]
  return lr_crop, hr_crop


def random_dihedral(lr, hr):
  """One of the 8 flips/rotations, the same for both images."""
  k = tf.random.uniform([], 0, 4, dtype=tf.int32)
  lr, hr = tf.image.rot90(lr, k), tf.image.rot90(hr, k)
  flip = tf.random.uniform([]) < 0.5
  lr = tf.cond(flip, lambda: tf.image.flip_left_right(lr), lambda: lr)
  hr = tf.cond(flip, lambda: tf.image.flip_left_right(hr), lambda: hr)
  return lr, hr


def _informative(lr, hr):
  del lr
  return tf.logical_or(tf.math.reduce_std(hr) > FLAT_PATCH_STD,
                       tf.random.uniform([]) < FLAT_PATCH_KEEP_PROBABILITY)


def train_dataset(file_pattern, tf_transform_output, batch_size: int, patch_size: int,
                  scale: int) -> tf.data.Dataset:
  """An endless stream of augmented (lr, hr) patch batches."""
  if patch_size % scale:
    raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}.")
  lr_patch = patch_size // scale
  dataset = _load(file_pattern, tf_transform_output).repeat()
  dataset = dataset.shuffle(SHUFFLE_BUFFER)
  dataset = dataset.map(lambda lr, hr: random_patch(lr, hr, lr_patch, scale),
                        num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.filter(_informative)
  dataset = dataset.map(random_dihedral, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(file_pattern, tf_transform_output, batch_size: int) -> tf.data.Dataset:
  """Whole transformed eval tiles as (lr, hr) batches; one pass is one validation."""
  tiles = _load(file_pattern, tf_transform_output)
  # Keras warns "Your input ran out of data" after each validation pass over a dataset
  # of unknown length. Counting the tiles once (which fills the cache) makes it known.
  count = int(tiles.reduce(0, lambda count, _: count + 1))
  tiles = tiles.apply(tf.data.experimental.assert_cardinality(count))
  return tiles.batch(batch_size).prefetch(tf.data.AUTOTUNE)
