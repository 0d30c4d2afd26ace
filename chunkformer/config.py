"""Model configuration in the released (WeNet-style) ``config.yaml`` schema (spec §2).

A model folder's config is read once here and turned into plain constructor keywords. Released
configs may carry keys our model does not use (training sections, upstream extras); those are
reported, never silently dropped, and values our model cannot honour are refused with the key
named. The pre-pip schema's type names are mapped to the current ones.
"""
import copy
import difflib
import inspect
from typing import Dict, Iterable, List, Tuple

import yaml

# Older (pre-pip) schema → current names (spec §2, "History").
LEGACY_VALUES = {
    "input_layer": {"depthwise": "dw_striding"},
    "pos_enc_layer_type": {"stream_rel_pos": "chunk_rel_pos"},
    "selfattention_layer_type": {"stream_rel_selfattn": "chunk_rel_seflattn"},
}
LEGACY_KEYS = {"use_dynamic_conv": "dynamic_conv"}

# encoder_conf keys that must have one value for the architecture we implement.
REQUIRED_VALUES = {
    "input_layer": "dw_striding",
    "pos_enc_layer_type": "chunk_rel_pos",
    "selfattention_layer_type": "chunk_rel_seflattn",
    "normalize_before": True,
    "use_cnn_module": True,
    "dynamic_conv": True,
    "macaron_style": True,
    "final_norm": True,
    "causal": False,
    "layer_norm_type": "layer_norm",
}
# encoder_conf key → ChunkFormerEncoder keyword.
ENCODER_KWARGS = {
    "output_size": "output_size",
    "attention_heads": "attention_heads",
    "linear_units": "linear_units",
    "num_blocks": "num_blocks",
    "cnn_module_kernel": "cnn_module_kernel",
    "dropout_rate": "dropout_rate",
    "positional_dropout_rate": "positional_dropout_rate",
    "attention_dropout_rate": "attention_dropout_rate",
    "activation_type": "activation_type",
    "cnn_module_norm": "cnn_module_norm",
    "norm_eps": "norm_eps",
}
# Training-time keys kept in the config and read by the trainer, not by the encoder.
TRAINING_KEYS = {"dynamic_chunk_sizes", "dynamic_left_context_sizes",
                 "dynamic_right_context_sizes", "streaming"}


class ConfigError(ValueError):
    """A config value the model cannot honour."""


def load_yaml(path) -> dict:
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at top level")
    return cfg


def upgrade_legacy(cfg: dict) -> Tuple[dict, List[str]]:
    """Map the pre-pip schema onto the current one; returns (new config, notes on changes)."""
    cfg = copy.deepcopy(cfg)
    notes = []
    enc = cfg.setdefault("encoder_conf", {})
    for old, new in LEGACY_KEYS.items():
        if old in enc:
            enc.setdefault(new, enc.pop(old))
            notes.append(f"encoder_conf.{old} → {new}")
    for key, mapping in LEGACY_VALUES.items():
        if enc.get(key) in mapping:
            notes.append(f"encoder_conf.{key}: {enc[key]} → {mapping[enc[key]]}")
            enc[key] = mapping[enc[key]]
    return cfg, notes


def encoder_kwargs(cfg: dict) -> Tuple[Dict, List[str]]:
    """``encoder_conf`` → (ChunkFormerEncoder keywords, keys present but unused)."""
    if cfg.get("encoder", "chunkformer") != "chunkformer":
        raise ConfigError(f"encoder: {cfg['encoder']!r} is not supported (only chunkformer)")
    enc = cfg.get("encoder_conf", {})
    kwargs = {"input_size": int(cfg.get("input_dim", 80))}
    unused = []
    for key, value in enc.items():
        if key in REQUIRED_VALUES:
            if value != REQUIRED_VALUES[key]:
                raise ConfigError(f"encoder_conf.{key}: {value!r} is not supported "
                                  f"(only {REQUIRED_VALUES[key]!r})")
        elif key in ENCODER_KWARGS:
            kwargs[ENCODER_KWARGS[key]] = value
        elif key not in TRAINING_KEYS:
            unused.append(f"encoder_conf.{key}")
    return kwargs, unused


EXPERIMENT_SECTIONS = ("model", "tokenizer", "data", "optim", "train")


def apply_overrides(cfg: dict, overrides) -> dict:
    """``section.key=value`` strings (value parsed as YAML) → a new config. The sections on
    the path must exist; the key itself is checked where the section is used
    (:func:`check_keys`), so a misspelt override is an error, never ignored."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        path, value = item.split("=", 1)
        keys = path.split(".")
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"override {item!r}: no section {k!r}")
            node = node[k]
        node[keys[-1]] = yaml.safe_load(value)
    return cfg


def load_experiment(path, overrides=()) -> dict:
    """An experiment YAML (sections model, tokenizer, data, optim, train) with overrides."""
    cfg = load_yaml(path)
    unknown = set(cfg) - set(EXPERIMENT_SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)} "
                          f"(expected {', '.join(EXPERIMENT_SECTIONS)})")
    for section in EXPERIMENT_SECTIONS:
        cfg.setdefault(section, {})
    return apply_overrides(cfg, overrides)


def check_keys(section: str, conf: dict, fn, extra: Iterable[str] = (),
               skip: Iterable[str] = ()) -> dict:
    """Refuse keys of ``conf`` that ``fn`` does not take as keywords (``extra`` names more that
    are read elsewhere, ``skip`` parameters that are not config keys)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return conf
    refuse_unknown(section, conf, (set(params) - {"self", *skip}) | set(extra))
    return conf


def refuse_unknown(section: str, conf: dict, known: Iterable[str]):
    """ConfigError for the keys of ``conf`` not in ``known``, each with the nearest known key
    (``optim.lrr is not a known key: did you mean optim.lr?``)."""
    known = sorted(known)
    unknown = sorted(set(conf) - set(known))
    if not unknown:
        return
    parts = []
    for key in unknown:
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parts.append(f"{section}.{key} is not a known key"
                     + (f": did you mean {section}.{near[0]}?" if near else ""))
    raise ConfigError("; ".join(parts) + f" (known in {section}: {', '.join(known)})")
