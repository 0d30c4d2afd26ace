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
    extras_require={
        "test": ["pytest"],
        "server": ["websockets>=13"],  # chunkformer.bin.serve / stream_client
        "onnx": ["onnx", "onnxruntime", "onnxscript"],  # chunkformer.bin.export_onnx
    },
    entry_points={
        "console_scripts": [
            "chunkformer-recognize=chunkformer.bin.recognize:main",
            "chunkformer-prepare_data=chunkformer.bin.prepare_data:main",
            "chunkformer-compute_cmvn=chunkformer.bin.compute_cmvn:main",
            "chunkformer-build_vocab=chunkformer.bin.build_vocab:main",
            "chunkformer-split_data=chunkformer.bin.split_data:main",
            "chunkformer-make_shards=chunkformer.bin.make_shards:main",
        ]
    },
)
