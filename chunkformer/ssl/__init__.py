"""Self-supervised pretraining of the ChunkFormer encoder (BEST-RQ, :mod:`.bestrq`)."""
