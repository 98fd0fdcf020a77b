"""The splits of ImageExampleGen's output, and finding one that holds examples.

Each image goes to a split by a hash of its path (ImageExampleGen's SPLIT_BUCKETS):
the Tuner and the Trainer's early stopping look at eval, the Evaluator's blessing at
test only, so the number that decides a push was never used to choose the model.
"""
import os
from typing import Optional, Sequence

import tensorflow as tf
from tfx.types import artifact_utils

TRAIN = "train"
EVAL = "eval"
TEST = "test"


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
