"""The splits of ImageExampleGen's output, and finding one that holds examples.

Each image goes to a split by a hash of its path (ImageExampleGen's SPLIT_BUCKETS):
the Tuner and the Trainer's early stopping look at eval, the Evaluator's blessing at
test only, so the number that decides a push was never used to choose the model.
"""
import bisect
import hashlib
import itertools
import os
from typing import Optional, Sequence

import tensorflow as tf
from tfx.types import artifact_utils

TRAIN = "train"
EVAL = "eval"
TEST = "test"
# Hash buckets of each split: 80 / 10 / 10 by the hash of the file's relative path.
SPLIT_BUCKETS = ((TRAIN, 8), (EVAL, 1), (TEST, 1))


def split_of(relative_path: str) -> str:
  """The split ImageExampleGen puts a file in: TFX's hash partition of the FILENAME
  feature (sha256 of the serialized feature, modulo the bucket count)."""
  feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[relative_path.encode()]))
  key = feature.SerializeToString(deterministic=True)
  edges = list(itertools.accumulate(buckets for _, buckets in SPLIT_BUCKETS))
  bucket = int(hashlib.sha256(key).hexdigest(), 16) % edges[-1]
  return SPLIT_BUCKETS[bisect.bisect(edges, bucket)][0]


def has_examples(examples, split: str) -> bool:
  """Whether the Examples-like artifact (ExampleGen's or Transform's) has `split` with at
  least one record in it."""
  if split not in artifact_utils.decode_split_names(examples.split_names):
    return False
  files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
  records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(1)
  return bool(files) and any(True for _ in records)


def first_with_examples(examples, splits: Sequence[str]) -> Optional[str]:
  """The first of `splits` that holds examples; None when none does."""
  return next((split for split in splits if has_examples(examples, split)), None)
