"""tf.data input pipelines over Transform's output, for the Tuner, Trainer and Evaluator.

Transform's output is streamed from disk, never held whole: photos and then their tiles
are shuffled in bounded buffers, each tile read gives several random aligned LR/HR
patches with the 8 flips/rotations, and nearly flat patches (sky, walls) teach nothing
and are mostly skipped. Validation and evaluation use whole tiles, the first (most
detailed) `tiles_per_photo` of each photo, so their size is bounded by the number of
photos and their PSNR is comparable across runs.
"""
import tensorflow as tf
import tensorflow_transform as tft

from superres_tfx.components import features
from superres_tfx.core import errors
from superres_tfx.imaging import image_ops

# A patch whose HR standard deviation is below this is "flat" and kept only rarely.
FLAT_PATCH_STD = 0.02
FLAT_PATCH_KEEP_PROBABILITY = 0.1
# Shuffle buffers, in elements: photos (serialized, up to max_tiles PNG pairs each),
# tiles (a PNG pair, ~150 KB) and patches (float, ~35 KB at 48 px): ~250 MB at most.
PHOTO_SHUFFLE_BUFFER = 16
TILE_SHUFFLE_BUFFER = 512
PATCH_SHUFFLE_BUFFER = 1024
# Random patches cut from each tile read: decoding a tile costs about what cutting
# eight patches from it does.
PATCHES_PER_TILE = 8
EVAL_BATCH_SIZE = 4  # whole tiles per validation batch


def _files(file_pattern):
  return tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else [
      f for pattern in file_pattern for f in tf.io.gfile.glob(pattern)]


def has_records(file_pattern) -> bool:
  """Whether the transformed files hold at least one photo."""
  files = _files(file_pattern)
  return bool(files) and any(
      True for _ in tf.data.TFRecordDataset(files, compression_type="GZIP").take(1))


def validation_files(train_files, eval_files):
  """The eval split's files, or the train split's when a folder too small gave no eval
  photo (validation then says little: the network trains on those photos too)."""
  if has_records(eval_files):
    return eval_files
  if not has_records(train_files):
    raise errors.SuperresError(
        "No training photos: every photo of the folder went to the eval or test split "
        "(about one in ten goes to each, by a hash of its path). Add photos; 20 or more "
        "give every split some.")
  return train_files


def _photos(file_pattern, tf_transform_output: tft.TFTransformOutput,
            shuffle: bool = False) -> tf.data.Dataset:
  """Transformed examples (one per photo) as parsed dicts."""
  files = _files(file_pattern)
  if not files:
    raise errors.SuperresError(f"No transformed examples match {file_pattern}.")
  spec = tf_transform_output.transformed_feature_spec()
  dataset = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
  # Transform writes one file per split: workers must shard by record, not by file.
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  dataset = dataset.with_options(options)
  if shuffle:
    dataset = dataset.shuffle(PHOTO_SHUFFLE_BUFFER)
  return dataset.map(lambda record: tf.io.parse_single_example(record, spec))


def _tile_pngs(photo, limit=None) -> tf.data.Dataset:
  """One photo's (lr, hr) PNG pairs, best first; at most `limit` of them."""
  lr, hr = photo[features.LR].values, photo[features.HR].values
  if limit is not None:
    lr, hr = lr[:limit], hr[:limit]
  return tf.data.Dataset.from_tensor_slices((lr, hr))


def _decode(png):
  image = tf.io.decode_png(png, channels=3)
  image.set_shape([None, None, 3])
  return image


def decode_pair(lr_png, hr_png):
  """PNG strings -> float32 (lr, hr) in [0, 1]."""
  return image_ops.to_float(_decode(lr_png)), image_ops.to_float(_decode(hr_png))


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
  tiles = _photos(file_pattern, tf_transform_output, shuffle=True).repeat()
  tiles = tiles.flat_map(_tile_pngs).shuffle(TILE_SHUFFLE_BUFFER)
  tiles = tiles.map(decode_pair, num_parallel_calls=tf.data.AUTOTUNE)
  patches = tiles.flat_map(
      lambda lr, hr: tf.data.Dataset.from_tensors((lr, hr)).repeat(PATCHES_PER_TILE))
  patches = patches.map(lambda lr, hr: random_patch(lr, hr, lr_patch, scale),
                        num_parallel_calls=tf.data.AUTOTUNE)
  patches = patches.shuffle(PATCH_SHUFFLE_BUFFER).filter(_informative)
  patches = patches.map(random_dihedral, num_parallel_calls=tf.data.AUTOTUNE)
  return patches.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(file_pattern, tf_transform_output, batch_size: int,
                 tiles_per_photo: int) -> tf.data.Dataset:
  """The first `tiles_per_photo` tiles of every photo as float (lr, hr) batches; one
  pass is one validation. Held in memory in 8 bits once read (bounded by the photos)."""
  tiles = _photos(file_pattern, tf_transform_output).flat_map(
      lambda photo: _tile_pngs(photo, tiles_per_photo))
  tiles = tiles.map(lambda lr, hr: (_decode(lr), _decode(hr))).cache()
  # Keras warns "Your input ran out of data" after each validation pass over a dataset
  # of unknown length. Counting the tiles once (which fills the cache) makes it known.
  count = int(tiles.reduce(0, lambda count, _: count + 1))
  tiles = tiles.apply(tf.data.experimental.assert_cardinality(count))
  tiles = tiles.map(lambda lr, hr: (image_ops.to_float(lr), image_ops.to_float(hr)))
  return tiles.batch(batch_size).prefetch(tf.data.AUTOTUNE)
