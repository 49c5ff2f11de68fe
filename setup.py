"""Install sketchtf; `pip install .` also compiles the C++ ops in ops/.

The ops are built against TensorFlow's own flags (tf.sysconfig), so TensorFlow
is a build requirement (pyproject.toml); see sketchtf/ops/build.py.
"""
import importlib.util
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _op_builder():
    # Loaded by path: importing the sketchtf package here would be premature.
    spec = importlib.util.spec_from_file_location(
        "_sketchtf_op_build", os.path.join(ROOT, "sketchtf", "ops", "build.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildPyWithOps(build_py):
    def run(self):
        super().run()
        builder = _op_builder()
        builder.build_ops(ROOT, os.path.join(self.build_lib, "sketchtf", "ops", builder.LIB_NAME))


VERBS = ["prepare", "train", "distill", "launch", "evaluate", "export", "quantize", "gates", "binarize", "serve",
         "quickstart"]

RUNTIME = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-model-optimization==0.8.1",
    "absl-py~=1.2",
    "tensorflow-datasets==4.9.10",
    "importlib_resources",
    "ml-collections>=1.0",
    "tensorboard==2.21.0",
    "ai-edge-litert>=2.0",
    "numpy>=1.26",
    "pillow>=10",
    "defusedxml>=0.7",
    "matplotlib>=3.8",
]

setup(
    name="sketchtf",
    version="0.1.0",
    description="Hand-drawn sketches to a tiny, fast, shippable TensorFlow recognizer",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["sketchtf", "sketchtf.*"]),
    package_data={"sketchtf": ["ship/web/*", "data/quickdraw_classes.txt"]},
    install_requires=RUNTIME,
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout", "selenium>=4.20"],
        # sketchtf.prepare --engine=beam and `tfds build` on Beam (the tfds CLI imports
        # mlcroissant). Beam's pins fit the TF stack (its protobuf 6.x satisfies TF 2.21's
        # >=6.31.1,<8), so one venv holds both.
        "beam": ["apache-beam>=2.60", "mlcroissant>=1.0"],
    },
    # Each `python -m sketchtf.<verb>` is also a command: sketchtf-train, sketchtf-evaluate, ...
    entry_points={"console_scripts": [f"sketchtf-{verb}=sketchtf.{verb}:run" for verb in VERBS]},
    cmdclass={"build_py": BuildPyWithOps},
)
