"""Where work lives unless a flag says otherwise: $SUPERRES_HOME, by default ~/.superres.

Plain Python, importing nothing of the project: the CLI, the pipeline and the model
server agree on these folders without loading TensorFlow.
"""
import os

HOME = os.environ.get("SUPERRES_HOME", os.path.join(os.path.expanduser("~"), ".superres"))
PIPELINE_ROOT = os.path.join(HOME, "pipeline")  # artifacts, ML Metadata, logs, reports
SERVING_DIR = os.path.join(HOME, "serving")  # <model name>/<version>/, TF Serving's layout
DATA_DIR = os.path.join(HOME, "data")  # staged photos: bundled/, corpus/, ...
