"""Install with ``pip install -e .``; console scripts mirror the ``python -m`` entry points."""
from setuptools import find_packages, setup

setup(
    name="chunkformer",
    version="0.1.0",
    description="Train, fine-tune and deploy ChunkFormer speech models (plain PyTorch recipes)",
    packages=find_packages(include=["chunkformer", "chunkformer.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "pyyaml",
        "sentencepiece",
        "tensorboard",
        "editdistance",
        "kaldiio",
        "soundfile",
        "numpy",
        "tqdm",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "chunkformer-recognize=chunkformer.bin.recognize:main",
        ]
    },
)
