"""Load any model folder this toolkit writes, by the ``model`` field of its config.yaml: an ASR
model (released layout), a BEST-RQ pretrained encoder, or an encoder with task heads."""
import sys

from chunkformer.config import load_yaml
from chunkformer.heads.multitask import is_multitask, load_heads_folder
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import resolve_model_dir
from chunkformer.ssl.bestrq import BestRQModel, is_bestrq


def load_model_folder(folder, device="cpu"):
    """→ ChunkFormerModel, BestRQModel or EncoderWithHeads (eval mode); strict loads."""
    folder = resolve_model_dir(folder)
    if not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: not a model folder (no config.yaml)")
    cfg = load_yaml(folder / "config.yaml")
    if is_multitask(cfg):
        return load_heads_folder(folder, device)
    if is_bestrq(cfg):
        return BestRQModel.from_pretrained(folder, device)
    return ChunkFormerModel.from_pretrained(folder, device)


def load_task_model_or_exit(folder, device="cpu"):
    """A task model folder (``model: multitask``), or exit with a one-line error."""
    model = load_model_folder(folder, device)
    if not hasattr(model, "heads"):
        sys.exit(f"error: {folder} has no task heads (config.yaml model: multitask)")
    return model
