"""Test set-up shared by every test module."""
import os
import sys

# Quiet TensorFlow's C++ start-up banner; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
