"""chunkformer: train, fine-tune, pretrain and deploy ChunkFormer speech models.

``from chunkformer import ChunkFormerModel`` is the upstream package's import (the class lives in
:mod:`chunkformer.model`; it is loaded on first use so that ``python -m chunkformer.bin.<tool>``
does not pay for it twice).
"""
__all__ = ["ChunkFormerModel"]


def __getattr__(name):
    if name == "ChunkFormerModel":
        from chunkformer.model import ChunkFormerModel

        return ChunkFormerModel
    raise AttributeError(f"module 'chunkformer' has no attribute {name!r}")
