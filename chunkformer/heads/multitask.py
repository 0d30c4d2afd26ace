"""One encoder, any set of named heads: CTC for ASR, utterance classifiers (intent, emotion,
outcome) and a speaker-embedding head, trained together with loss weights by the one trainer.

    frames ──► encoder ──► final output ────────────────┬─► ctc (ASR, ``ctc.ctc_lo.*``)
                  └─► block outputs ─► layer weights ─┐  │
                                                      └──┴─► heads[name] (pooled) ─► logits

A head reads the encoder's final output (``input: final``), one block's output (``input: 2``)
or a learned softmax-weighted sum of all block outputs (``input: weighted``; the weights are
shared by the heads that read it). The CTC head keeps the released key names, so an ASR model
folder (``encoder.*`` + ``ctc.*``) loads into this model with only the new heads fresh.

Model section (``config.yaml``): the released encoder schema plus
    model: multitask
    heads:
      intent:  {type: classifier, field: intent, classes: [...], pooling: attentive, weight: 1,
                class_weights: balanced}          # optional: inverse class frequencies
      speaker: {type: speaker, field: speaker, classes: [...], embed_dim: 128, weight: 0.5}
      asr:     {type: ctc, weight: 0.3}           # needs a tokenizer (output_dim = vocabulary)
"""
import copy
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from chunkformer.config import ConfigError, check_keys, encoder_kwargs, load_yaml
from chunkformer.data.vocab import Vocabulary
from chunkformer.encoder.encoder import ChunkFormerEncoder
from chunkformer.heads.adapters import attach_adapters, load_trainable
from chunkformer.heads.classifier import SpeakerEmbeddingHead, UtteranceClassifier
from chunkformer.heads.ctc import CTCHead
from chunkformer.model import model_features
from chunkformer.pretrained import (WEIGHT_FILES, read_encoder_state, read_folder_cmvn,
                                    take_encoder)

MODEL_TYPE = "multitask"
HEAD_TYPES = {"classifier": UtteranceClassifier, "speaker": SpeakerEmbeddingHead}
ADAPTER_FILE = "adapters.pt"  # what trained (adapters, heads), without the base encoder


class LayerWeights(nn.Module):
    """Softmax-weighted sum of N block outputs (weights start equal)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers):
        w = torch.softmax(self.logits, dim=0)
        return sum(wi * h for wi, h in zip(w, layers))


class EncoderWithHeads(nn.Module):
    """Args:
        encoder: a ChunkFormerEncoder.
        heads: the model section's ``heads`` mapping (each with its ``classes``).
        config: the model section, written back as ``config.yaml``.
        vocab: the CTC head's vocabulary (with a ``ctc`` head).
        cmvn_stats: the ``global_cmvn`` file's bytes.
    """

    def __init__(self, encoder, heads: Dict[str, dict], config: Optional[dict] = None,
                 vocab=None, cmvn_stats: Optional[bytes] = None):
        super().__init__()
        self.encoder, self.config, self.vocab, self.cmvn_stats = encoder, config or {}, vocab, \
            cmvn_stats
        self.decoder = None
        self.specs, self.ctc, self.ctc_weight = {}, None, 0.0
        self.heads = nn.ModuleDict()
        d = encoder.output_size
        for name, conf in heads.items():
            conf = dict(conf)
            kind = conf.pop("type", None)
            spec = {"field": conf.pop("field", name), "weight": float(conf.pop("weight", 1.0)),
                    "input": conf.pop("input", "final"), "type": kind}
            if kind == "ctc":
                if vocab is None:
                    raise ConfigError(f"heads.{name}: a ctc head needs a tokenizer")
                self.ctc = CTCHead(len(vocab), d, int(conf.pop("blank_id", 0)))
                self.ctc_weight = spec["weight"]
                self.ctc_name = name
                continue
            if kind not in HEAD_TYPES:
                raise ConfigError(f"heads.{name}.type: {kind!r} is not one of ctc, "
                                  f"{', '.join(HEAD_TYPES)}")
            if not conf.get("classes"):
                raise ConfigError(f"heads.{name}: no classes (list them, or let train collect "
                                  f"them from the training list's '{spec['field']}' field)")
            check_keys(f"heads.{name}", conf, HEAD_TYPES[kind])
            self.heads[name] = HEAD_TYPES[kind](d, **conf)
            self.specs[name] = spec
        inputs = {s["input"] for s in self.specs.values()}
        self.layer_weights = LayerWeights(encoder.num_blocks) if "weighted" in inputs else None
        self.needs_layers = any(i != "final" for i in inputs)
        for name, spec in self.specs.items():
            i = spec["input"]
            if i not in ("final", "weighted") and not (isinstance(i, int)
                                                       and 0 <= i < encoder.num_blocks):
                raise ConfigError(f"heads.{name}.input: {i!r} is not final, weighted or a "
                                  f"block index 0..{encoder.num_blocks - 1}")

    # Which parameters get gradients depends on the heads' inputs (blocks above the highest
    # one read, the final norm without a "final" reader); DDP must look for them every step.
    varying_graph = True

    @property
    def stat_names(self):
        names = ["loss"] + (["loss_ctc"] if self.ctc is not None else [])
        return tuple(names + [f"{k}_{n}" for n in self.heads for k in ("loss", "acc")])

    @property
    def device(self):
        return next(self.parameters()).device

    def features(self, audio, sample_rate=None, start=None, end=None,
                 channel=None) -> torch.Tensor:
        """Path or waveform (``channel``: only that one) → (T, 80) fbank, as the ASR model
        computes it."""
        return model_features(self.config, audio, sample_rate, start, end, channel)

    def head_input(self, name: str, enc, layers):
        i = self.specs[name]["input"]
        if i == "final":
            return enc
        return self.layer_weights(layers) if i == "weighted" else layers[i]

    def run(self, feats, feats_lens, chunk_size: Optional[int] = 0, left_context_size: int = 0,
            right_context_size: int = 0) -> dict:
        """Encode once and run every head → {"enc", "lens", name: (head output, frame weights)}.
        Classifiers give logits (B, C), the speaker head cosines to the training speakers."""
        out = self.encoder(feats, feats_lens, chunk_size, left_context_size, right_context_size,
                           return_layers=self.needs_layers)
        enc, lens, layers = out if self.needs_layers else (*out, None)
        result = {"enc": enc, "lens": lens, "layers": layers}
        for name, head in self.heads.items():
            result[name] = head(self.head_input(name, enc, layers), lens)
        return result

    @torch.no_grad()
    def outputs(self, audio, start=None, end=None, context=(0, 0, 0)) -> Dict[str, torch.Tensor]:
        """One recording (or its ``start``-``end`` seconds) → {head: class probabilities (C,)
        for a classifier, the embedding (E,) for a speaker head}; ``context`` is (chunk, left,
        right) frames, (0, 0, 0) full context."""
        feats = self.features(audio, start=start, end=end).to(self.device)
        result = self.run(feats[None], torch.tensor([feats.size(0)]), *context)
        out = {}
        for name, head in self.heads.items():
            if isinstance(head, SpeakerEmbeddingHead):
                x = self.head_input(name, result["enc"], result["layers"])
                out[name] = head.embed(x, result["lens"])[0][0]
            else:
                out[name] = torch.softmax(result[name][0][0].float(), dim=-1)
        return out

    def forward(self, feats, feats_lens, targets=None, target_lens=None,
                chunk_size: Optional[int] = 0, left_context_size: int = 0,
                right_context_size: int = 0, labels: Optional[Dict] = None) -> dict:
        """Weighted sum of the heads' losses, each the mean over the utterances that carry its
        label (the CTC loss over all utterances, when there is a CTC head)."""
        labels = labels or {}
        out = self.run(feats, feats_lens, chunk_size, left_context_size, right_context_size)
        total = feats.new_zeros(())
        stats = {}
        if self.ctc is not None:
            loss_ctc = self.ctc.loss(out["enc"], out["lens"], targets, target_lens).mean()
            total = total + self.ctc_weight * loss_ctc
            stats["loss_ctc"] = loss_ctc.detach()
        for name, head in self.heads.items():
            field = self.specs[name]["field"]
            y = labels.get(field)
            if y is None:
                y = torch.full((feats.size(0),), -1, dtype=torch.long, device=feats.device)
            logits = out[name][0]
            has = (y >= 0).sum().clamp_min(1)
            loss = head.loss(logits, y).sum() / has
            total = total + self.specs[name]["weight"] * loss
            stats[f"loss_{name}"] = loss.detach()
            stats[f"acc_{name}"] = (((logits.argmax(-1) == y) & (y >= 0)).sum() / has).detach(
                ).float()
        return {"loss": total, **stats, "weight": feats.size(0)}


def label_fields(model: EncoderWithHeads) -> Dict[str, Dict[str, int]]:
    """{field: {class: id}} the data pipeline needs for the model's heads."""
    return {model.specs[n]["field"]: {c: i for i, c in enumerate(h.classes)}
            for n, h in model.heads.items()}


def is_multitask(cfg: dict) -> bool:
    return cfg.get("model") == MODEL_TYPE


def collect_classes(model_cfg: dict, rows) -> dict:
    """A copy of the model section whose classification heads without ``classes`` get the
    sorted values their field takes in ``rows``, and whose ``class_weights: balanced`` become
    one weight per class, N / (C · count) (mean 1 over the rows), written to config.yaml with
    the model."""
    from chunkformer.data.dataset import row_label

    cfg = copy.deepcopy(model_cfg)
    for name, head in (cfg.get("heads") or {}).items():
        if head.get("type") == "ctc":
            continue
        field = head.get("field", name)
        labels = [str(v) for v in (row_label(r, field) for r in rows) if v is not None]
        if not head.get("classes"):
            head["classes"] = sorted(set(labels))
            if len(head["classes"]) < 2:
                raise ConfigError(f"heads.{name}: the training list has "
                                  f"{len(head['classes'])} value(s) of field '{field}'; a "
                                  "classifier needs at least 2")
        if head.get("class_weights") == "balanced":
            counts = Counter(labels)
            missing = [c for c in head["classes"] if not counts[c]]
            if missing:
                raise ConfigError(f"heads.{name}: class_weights: balanced, but the training "
                                  f"list has no '{missing[0]}'")
            n, k = sum(counts[c] for c in head["classes"]), len(head["classes"])
            head["class_weights"] = [round(n / (k * counts[c]), 6) for c in head["classes"]]
    return cfg


def build_heads_model(cfg: dict, cmvn=None, cmvn_stats: Optional[bytes] = None, vocab=None):
    """An :class:`EncoderWithHeads` from a model section: encoder, heads and, with
    ``adapters: {kind: bottleneck | lora, dim, alpha}``, adapters on a frozen encoder."""
    kwargs, unused = encoder_kwargs(cfg)
    unused = [k for k in unused if k not in ("heads", "adapters", "base_model")]
    if unused:
        raise ConfigError(f"model section: keys not used by the model: {', '.join(unused)}")
    model = EncoderWithHeads(ChunkFormerEncoder(**kwargs, cmvn=cmvn), cfg.get("heads") or {},
                             cfg, vocab, cmvn_stats)
    adapters = cfg.get("adapters")
    if adapters:
        attach_adapters(model, **adapters)
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    return model


def load_heads_folder(folder, device="cpu") -> EncoderWithHeads:
    """A task model folder → model (eval mode). Either self-contained (``pytorch_model.bin``,
    loaded strictly), or small: ``adapters.pt`` (what trained) on top of the encoder of the
    folder named by ``base_model`` in its config.yaml."""
    folder = Path(folder)
    cfg = load_yaml(folder / "config.yaml")
    cmvn, stats = read_folder_cmvn(folder, cfg)
    vocab = Vocabulary.load(folder / "vocab.txt") if (folder / "vocab.txt").is_file() else None
    model = build_heads_model(cfg, cmvn, stats, vocab)
    weights = [folder / f for f in WEIGHT_FILES if (folder / f).is_file()]
    if weights:
        state = torch.load(weights[0], map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    elif (folder / ADAPTER_FILE).is_file() and cfg.get("base_model"):
        base = Path(cfg["base_model"])
        base = base if base.is_absolute() else folder / base
        take_encoder(model, read_encoder_state(base)[0], base)
        load_trainable(model, folder / ADAPTER_FILE)
    else:
        raise FileNotFoundError(f"{folder}: no weights (pytorch_model.bin, or {ADAPTER_FILE} "
                                "with base_model in config.yaml)")
    return model.to(device).eval()
