"""Released model folders: read them strictly, write them back in the same layout (spec §1–§6).

A folder holds ``config.yaml``, weights (``pytorch_model.bin``, or ``.pt`` / ``.ckpt``, a plain
state dict), optional ``vocab.txt`` and optional ``global_cmvn``. Every key of every module the
config builds must be present with the right shape; anything else stops the load with one message
listing missing keys, unexpected keys and shape mismatches. The only tolerated differences are
explicit rules, each reported:
* no ``decoder.*`` key at all → the model is built CTC-only;
* ``encoder.global_cmvn.*`` absent → taken from the ``global_cmvn`` file; present without the
  file → the checkpoint's statistics are used (upstream would silently apply none);
* keys under a caller-given ``ignore`` prefix are dropped and listed;
* a transducer folder (``model: transducer``) also holds ``predictor.*`` and ``joint.*``
  (strict like the rest) and may hold k2's training-only ``simple_am_proj`` /
  ``simple_lm_proj`` (dropped and listed).
"""
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional

import torch
import yaml

from chunkformer.config import ConfigError, encoder_kwargs, load_yaml, upgrade_legacy
from chunkformer.data.vocab import Vocabulary
from chunkformer.encoder.cmvn import GlobalCMVN, read_cmvn, write_cmvn
from chunkformer.encoder.encoder import ChunkFormerEncoder
from chunkformer.heads.attention_decoder import build_decoder
from chunkformer.heads.ctc import CTCHead
from chunkformer.transducer.heads import build_transducer_heads, is_transducer

WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.pt", "pytorch_model.ckpt")
CMVN_KEYS = ("encoder.global_cmvn.mean", "encoder.global_cmvn.istd")
K2_PREFIXES = ("simple_am_proj.", "simple_lm_proj.")


class CheckpointMismatch(RuntimeError):
    """The weights do not fit the model the config describes."""


@dataclass
class LoadReport:
    """What loading a folder did beyond a plain strict load, for the user to read."""

    folder: str
    notes: List[str] = field(default_factory=list)
    ignored_keys: List[str] = field(default_factory=list)
    unused_config: List[str] = field(default_factory=list)

    def __str__(self):
        lines = [f"loaded {self.folder}"] + [f"  {n}" for n in self.notes]
        if self.ignored_keys:
            lines.append(f"  ignored {len(self.ignored_keys)} keys on request: "
                         + ", ".join(self.ignored_keys[:10])
                         + (" …" if len(self.ignored_keys) > 10 else ""))
        if self.unused_config:
            lines.append("  config keys not used by this model: " + ", ".join(self.unused_config))
        return "\n".join(lines)


def resolve_model_dir(name_or_path, cache_dir=None) -> Path:
    """A model folder, or a Hugging Face repo id ``owner/name`` found in the local Hub cache
    (``<cache>/models--owner--name/snapshots/<refs/main>``); never downloads."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    name = str(name_or_path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        caches = [Path(cache_dir)] if cache_dir else [
            Path(os.environ["HF_HUB_CACHE"]) if "HF_HUB_CACHE" in os.environ else
            Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"]
        for cache in caches:
            repo = cache / ("models--" + name.replace("/", "--"))
            ref = repo / "refs" / "main"
            snapshot = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else "")
            if ref.is_file() and snapshot.is_dir():
                return snapshot
        raise FileNotFoundError(
            f"{name}: no such model folder, and not in the Hugging Face cache ({caches[0]}); "
            f"nothing is downloaded here: `huggingface-cli download {name} --local-dir "
            f"{name.split('/')[1]}` then pass that folder")
    raise FileNotFoundError(f"{name}: no such model folder")


def find_weights(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no weights file (looked for {', '.join(WEIGHT_FILES)})")


def special_ids(cfg: dict, vocab_size: int):
    """(sos, eos) from ``tokenizer_conf.special_tokens``; default both = V - 1."""
    tokens = (cfg.get("tokenizer_conf") or {}).get("special_tokens") or {}
    return int(tokens.get("<sos>", vocab_size - 1)), int(tokens.get("<eos>", vocab_size - 1))


def build_modules(cfg: dict, with_decoder: bool, cmvn: Optional[GlobalCMVN]):
    """(encoder, ctc head, decoder or None, unused config keys) for a released-schema config."""
    kwargs, unused = encoder_kwargs(cfg)
    encoder = ChunkFormerEncoder(**kwargs, cmvn=cmvn)
    vocab_size = int(cfg["output_dim"])
    blank = int((cfg.get("ctc_conf") or {}).get("ctc_blank_id", 0))
    ctc = CTCHead(vocab_size, encoder.output_size, blank)
    decoder = None
    if with_decoder:
        decoder = build_decoder(cfg.get("decoder", "transformer"), vocab_size,
                                encoder.output_size, cfg.get("decoder_conf") or {})
    return encoder, ctc, decoder, unused


def _check_keys(folder, expected: dict, state: dict):
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} ≠ model {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(state))
              if tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", shapes)):
            if items:
                shown = ", ".join(items[:20]) + (f" … (+{len(items) - 20})" if len(items) > 20
                                                  else "")
                parts.append(f"{title} ({len(items)}): {shown}")
        raise CheckpointMismatch(f"{folder}: weights do not match config.yaml — "
                                 + "; ".join(parts))


def read_folder_cmvn(folder: Path, cfg: dict):
    """A model folder's ``global_cmvn`` → (GlobalCMVN, the file's bytes), or (None, None)."""
    path = Path(folder) / "global_cmvn"
    if not path.is_file():
        return None, None
    mean, istd = read_cmvn(path, bool(cfg.get("is_json_cmvn", True)))
    return GlobalCMVN(mean, istd), path.read_bytes()


def load_folder(model_dir, ignore: Iterable[str] = (), map_location="cpu"):
    """Read a released-layout folder → (model parts dict, LoadReport). See module docstring."""
    folder = Path(model_dir)
    if not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"{folder}: not a model folder (no config.yaml)")
    cfg, notes = upgrade_legacy(load_yaml(folder / "config.yaml"))
    report = LoadReport(str(folder), notes=[f"legacy config: {n}" for n in notes])
    state = torch.load(find_weights(folder), map_location=map_location, weights_only=True)
    ignore = tuple(ignore)
    report.ignored_keys = sorted(k for k in state if ignore and k.startswith(ignore))
    state = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}

    cmvn, cmvn_stats = read_folder_cmvn(folder, cfg)
    if cmvn is not None:
        if all(k in state for k in CMVN_KEYS):
            report.notes.append("CMVN: checkpoint values used (they win over global_cmvn)")
    elif all(k in state for k in CMVN_KEYS):
        cmvn = GlobalCMVN(state[CMVN_KEYS[0]], state[CMVN_KEYS[1]])
        report.notes.append("CMVN: no global_cmvn file; statistics taken from the checkpoint")
    if cmvn is not None:
        for k, v in zip(CMVN_KEYS, (cmvn.mean, cmvn.istd)):
            state.setdefault(k, v)

    with_decoder = any(k.startswith("decoder.") for k in state)
    if not with_decoder:
        report.notes.append("no decoder.* weights: CTC-only model (attention rescoring off)")
    encoder, ctc, decoder, report.unused_config = build_modules(cfg, with_decoder, cmvn)
    modules = {"encoder": encoder, "ctc": ctc, "decoder": decoder}
    if is_transducer(cfg):
        modules["predictor"], modules["joint"] = build_transducer_heads(
            cfg, ctc.ctc_lo.out_features, encoder.output_size)
        k2_keys = sorted(k for k in state if k.startswith(K2_PREFIXES))
        if k2_keys:  # k2's training-only projections (enable_k2): nothing decodes with them
            report.notes.append(f"ignored {len(k2_keys)} k2 training-only keys: "
                                + ", ".join(k2_keys))
            state = {k: v for k, v in state.items() if not k.startswith(K2_PREFIXES)}
    expected = {f"{name}.{k}": v for name, module in modules.items() if module is not None
                for k, v in module.state_dict().items()}
    _check_keys(folder, expected, state)
    for name, module in modules.items():
        if module is not None:
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                    if k.startswith(prefix)}, strict=True)
    vocab = Vocabulary.load(folder / "vocab.txt") if (folder / "vocab.txt").is_file() else None
    if vocab is not None and len(vocab) != ctc.ctc_lo.out_features:
        raise ConfigError(f"{folder}/vocab.txt has {len(vocab)} units but output_dim is "
                          f"{ctc.ctc_lo.out_features}")
    parts = dict(modules, vocab=vocab, config=cfg, cmvn_stats=cmvn_stats)
    return parts, report


def save_folder(model, out_dir, weights: bool = True):
    """Write ``model`` in the released layout; ``load_folder`` reads it back bit-exactly.
    ``weights=False`` writes only config, vocabulary and CMVN (a template that checkpoint
    averaging fills in).

    Files are written to a temporary folder that replaces ``out_dir`` at the end, so an
    interrupted save never leaves a half-written model folder behind.
    """
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg = dict(model.config)
    if getattr(model, "ctc", None) is not None:  # a pretrained encoder (BEST-RQ) has no CTC
        cfg["output_dim"] = model.ctc.ctc_lo.out_features
    if model.decoder is None:
        cfg.pop("decoder", None)
    if model.encoder.global_cmvn is not None:
        cfg.update(cmvn_file="global_cmvn", is_json_cmvn=model.cmvn_stats is None
                   or cfg.get("is_json_cmvn", True))
        if model.cmvn_stats is not None:
            (tmp / "global_cmvn").write_bytes(model.cmvn_stats)
        else:  # statistics equivalent to (mean, istd) with one frame
            mean = model.encoder.global_cmvn.mean.double()
            var = 1.0 / model.encoder.global_cmvn.istd.double() ** 2
            write_cmvn(tmp / "global_cmvn", mean.tolist(), (var + mean * mean).tolist(), 1)
    with open(tmp / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, allow_unicode=True, sort_keys=False)
    if weights:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        torch.save(state, tmp / WEIGHT_FILES[0])
    if model.vocab is not None:
        model.vocab.save(tmp / "vocab.txt")
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def read_encoder_state(source) -> tuple:
    """The ``encoder.*`` tensors of a trained model, to start another model's encoder from.

    Args:
        source: a model folder (ASR or BEST-RQ: ``config.yaml`` + weights), a trainer
            checkpoint (``{"model": state, ...}``) or a plain state-dict file.
    Returns:
        (encoder state {"encoder.…": tensor}, the ``global_cmvn`` file's bytes or None,
        names of the source's other tensors, left behind).
    """
    path = Path(source)
    cmvn_stats = None
    if path.is_dir():
        state = torch.load(find_weights(path), map_location="cpu", weights_only=True)
        cmvn, cmvn_stats = read_folder_cmvn(path, load_yaml(path / "config.yaml"))
        if cmvn is not None and not all(k in state for k in CMVN_KEYS):
            state.update(zip(CMVN_KEYS, (cmvn.mean, cmvn.istd)))
    elif path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)
    else:
        raise FileNotFoundError(f"{source}: no model folder or checkpoint file there")
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        raise CheckpointMismatch(f"{source}: no encoder.* tensors")
    return encoder, cmvn_stats, sorted(k for k in state if not k.startswith("encoder."))


def take_encoder(model, encoder_state: dict, source) -> List[str]:
    """Load ``encoder_state`` into ``model.encoder`` strictly (every encoder tensor present
    with its shape, nothing else); returns report lines on what was taken over and what the
    model starts fresh."""
    expected = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    _check_keys(source, expected, encoder_state)
    model.encoder.load_state_dict({k[len("encoder."):]: v for k, v in encoder_state.items()},
                                  strict=True)
    fresh: dict = {}
    for name, _ in model.named_parameters():
        if not name.startswith("encoder."):
            top = name.split(".")[0]
            fresh[top] = fresh.get(top, 0) + 1
    return [f"encoder: all {len(encoder_state)} tensors taken from {source}",
            "new (randomly initialised): " + (", ".join(f"{k}.* ({n} tensors)"
                                                      for k, n in fresh.items()) or "nothing")]
