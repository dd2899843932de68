"""Packaging for moose_ros (ament_python for colcon, plain setuptools for pip/venv installs)."""

from __future__ import annotations

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "moose_ros"

#: The ROS 2 packages the node needs, as PyPI wheels; one distribution per venv (the wheels share module names).
ROS_PACKAGES = [
    "rclpy",
    "rmw-fastrtps-cpp",
    "sensor-msgs",
    "std-msgs",
    "diagnostic-msgs",
    "lifecycle-msgs",
    "rcl-interfaces",
    "builtin-interfaces",
    "ament-index-python",
]
ROS_WHEELS = [f"ros-kilted-{name}" for name in ROS_PACKAGES]
ROS_JAZZY_WHEELS = [f"ros-jazzy-{name}" for name in ROS_PACKAGES]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="MOoSe multi-head out-of-distribution segmentation for ROS 2",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", sorted(glob("config/*"))),
        (f"share/{PACKAGE}/models", sorted(glob("models/*"))),
    ],
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "pillow>=10",
        "onnx>=1.16",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scipy>=1.10",
    ],
    extras_require={
        # ONNX Runtime for CPU (the embedded default). Never together with the `gpu` extra.
        "cpu": ["onnxruntime>=1.18"],
        # TensorRT + CUDA ONNX Runtime (+ torch for CUDA device buffers); never beside the `cpu` extra.
        # TensorRT 10.x and 11.x: the backend's names are checked against the 10.16 and 11.4 bindings.
        "gpu": ["tensorrt>=10,<12", "onnxruntime-gpu>=1.18", "torch==2.14.1"],
        # venv installs without a ROS distribution: Kilted (`ros`, what `make` uses) or the Jazzy LTS (`ros-jazzy`,
        # `make venv-jazzy`); never both in one venv.
        "ros": ROS_WHEELS,
        "ros-jazzy": ROS_JAZZY_WHEELS,
        "train": ["torch==2.14.1", "torchvision==0.29.1"],
        # test tools; colcon builds the package as a ROS 2 workspace does (test/test_ros_colcon.py).
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "import-linter>=2.1", "scikit-learn>=1.4",
                "build>=1.0", "colcon-common-extensions>=0.3", "colcon-ros>=0.5"],
    },
    tests_require=["pytest"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "moose = moose_ros.cli:main",
            "moose_node = moose_ros.ros.node:main",
        ],
    },
)
