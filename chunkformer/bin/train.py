"""Train or fine-tune a ChunkFormer model (one process, or one per device under torchrun).

    python -m chunkformer.bin.train --config conf/train_small.yaml --exp_dir exp/small \
        --override train.max_steps=2000
    torchrun --nproc_per_node=2 -m chunkformer.bin.train --config ... --exp_dir ...

The config's sections: ``model`` (released config schema, written as the model folder's
config.yaml), ``tokenizer`` (``path``: vocab.txt / bpe.model / folder), ``data`` (``train``,
``dev``: any manifest or a ``shards.list``; ``audio_root``; ``cmvn``; optional
``train_feats_scp`` / ``dev_feats_scp`` precomputed features; pipeline keys of
chunkformer.data.loader), ``optim``, ``train``. ``train.init_from: <model folder>``
starts from released (or averaged) weights with a fresh optimizer and schedule; ``--resume``
continues this experiment from its latest checkpoint exactly. An experiment folder that already
has checkpoints is never restarted silently: pass ``--resume`` or use a new folder.

SIGTERM or SIGUSR1 (e.g. SLURM's ``--signal=USR1@120`` before a time limit) stops training at
the next step boundary with a checkpoint and exit status 75; ``--resume`` continues exactly.
"""
import argparse
import logging
import sys
from pathlib import Path

import torch
import yaml

from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.config import ConfigError, check_keys, load_experiment, refuse_unknown
from chunkformer.data.loader import DataConfig, build_data
from chunkformer.data.manifest import read_manifest
from chunkformer.data.shards import SHARD_LIST
from chunkformer.data.tokenizer import load_tokenizer
from chunkformer.encoder.cmvn import GlobalCMVN, read_cmvn
from chunkformer.heads.multitask import (build_heads_model, collect_classes, is_multitask,
                                         label_fields)
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import (CMVN_KEYS, build_modules, read_encoder_state,
                                    save_folder, take_encoder)
from chunkformer.ssl.bestrq import BestRQModel, is_bestrq
from chunkformer.training.distributed import init_distributed, shutdown
from chunkformer.training.optim import build_optimizer, trainable_summary
from chunkformer.training.trainer import DataError, Preempted, Trainer
from chunkformer.transducer.heads import build_transducer_heads, is_transducer
from chunkformer.transducer.model import TransducerModel

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped by a signal with its checkpoint written; resume it


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--override", nargs="*", default=[], help="section.key=value ...")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    return p


def build_model(cfg: dict, tokenizer):
    """A fresh model from the ``model`` section (``model: bestrq`` for self-supervised
    pretraining, ``model: transducer`` for RNN-T), released weights (``train.init_from``), or a
    fresh ASR model whose encoder starts from another model's (``train.init_encoder_from``: a
    pretrained folder or a checkpoint). ``train.rnnt_time_chunk``: frames per joint evaluation
    in a transducer's loss (memory-bounded, :mod:`chunkformer.transducer.loss`)."""
    model = _build_model(cfg, tokenizer)
    if isinstance(model, TransducerModel):
        model.time_chunk = cfg["train"].get("rnnt_time_chunk")
    elif cfg["train"].get("rnnt_time_chunk") is not None:
        raise ConfigError("train.rnnt_time_chunk is for transducer models (model: transducer)")
    cfg["train"].pop("rnnt_time_chunk", None)
    return model


def _build_model(cfg: dict, tokenizer):
    init_from = cfg["train"].pop("init_from", None)
    init_encoder_from = cfg["train"].pop("init_encoder_from", None)
    if init_from and init_encoder_from:
        raise ConfigError("train.init_from and train.init_encoder_from exclude each other")
    if is_bestrq(cfg["model"]) and init_from:
        return BestRQModel.from_pretrained(init_from)
    if init_from:
        model = ChunkFormerModel.from_pretrained(init_from)
        if cfg["data"].get("cmvn"):
            logging.info("data.cmvn not used: %s brings its own CMVN statistics", init_from)
        logging.info("initialised from %s (all %d tensors loaded)\n%s", init_from,
                     len(model.state_dict()), model.load_report)
        return model
    cmvn, stats = None, None
    encoder_state, left_behind = None, []
    if init_encoder_from:  # the encoder was trained on features under its own CMVN: keep it
        encoder_state, stats, left_behind = read_encoder_state(init_encoder_from)
        if all(k in encoder_state for k in CMVN_KEYS):
            cmvn = GlobalCMVN(*(encoder_state[k] for k in CMVN_KEYS))
            if cfg["data"].get("cmvn"):
                logging.info("data.cmvn not used: the encoder of %s brings its CMVN",
                             init_encoder_from)
    elif cfg["data"].get("cmvn"):
        cmvn = GlobalCMVN(*read_cmvn(cfg["data"]["cmvn"]))
        stats = Path(cfg["data"]["cmvn"]).read_bytes()
    if is_bestrq(cfg["model"]):
        model = BestRQModel.from_config(cfg["model"], cmvn, stats)
    elif is_multitask(cfg["model"]):
        model = build_heads_model(cfg["model"], cmvn, stats,
                                  tokenizer.vocab if tokenizer is not None else None)
    else:
        if tokenizer is None:
            raise ConfigError("tokenizer.path is required to train an ASR model")
        model_cfg = dict(cfg["model"], output_dim=len(tokenizer.vocab))
        encoder, ctc, decoder, unused = build_modules(model_cfg, "decoder" in model_cfg, cmvn)
        if unused:
            raise ConfigError(f"model section: keys not used by the model: {', '.join(unused)}")
        if is_transducer(model_cfg):
            predictor, joint = build_transducer_heads(model_cfg, len(tokenizer.vocab),
                                                      encoder.output_size)
            model = TransducerModel(encoder, ctc, predictor, joint, decoder, tokenizer.vocab,
                                    model_cfg, stats)
        else:
            model = ChunkFormerModel(encoder, ctc, decoder, tokenizer.vocab, model_cfg, stats)
    if encoder_state is not None:
        lines = take_encoder(model, encoder_state, init_encoder_from)
        if left_behind:
            lines.append(f"left behind: {len(left_behind)} tensors of the source "
                         f"({', '.join(sorted({k.split('.')[0] + '.*' for k in left_behind}))})")
        model.load_report = "\n".join(lines)
        logging.info("%s", model.load_report)
    return model


# encoder_conf keys of the released schema that choose the training contexts (spec §10) →
# the trainer's keywords.
CONTEXT_KEYS = {"dynamic_chunk_sizes": "chunk_sizes",
                "dynamic_left_context_sizes": "left_context_sizes",
                "dynamic_right_context_sizes": "right_context_sizes", "streaming": "streaming"}


def training_contexts(cfg: dict) -> dict:
    """The ``train`` section with the contexts a released-schema config names in
    ``model.encoder_conf`` (``dynamic_*_sizes``, ``streaming``); the same setting given in both
    places with different values is an error."""
    train = dict(cfg["train"])
    enc = (cfg["model"].get("encoder_conf") or {})
    for key, name in CONTEXT_KEYS.items():
        if key not in enc:
            continue
        if name in train and train[name] != enc[key]:
            raise ConfigError(f"train.{name} {train[name]} and model.encoder_conf.{key} "
                              f"{enc[key]} disagree: keep one")
        train[name] = enc[key]
    return train


DATA_PATHS = ("train", "dev", "audio_root", "cmvn", "train_feats_scp", "dev_feats_scp")
SCHEDULE_KEYS = ("warmup_steps", "scheduler", "min_lr_ratio")  # optim keys of the schedule


def check_experiment(cfg: dict):
    """Every key of the tokenizer, data, optim and train sections is read by something;
    checked before anything is built (the model section by its builder)."""
    refuse_unknown("tokenizer", cfg["tokenizer"], ["path"])
    DataConfig.from_dict({k: v for k, v in cfg["data"].items() if k not in DATA_PATHS})
    check_keys("optim", cfg["optim"], build_optimizer, extra=SCHEDULE_KEYS,
               skip=("model", "hold"))
    check_keys("train", training_contexts(cfg), Trainer, skip=(
        "model", "tokenizer", "train_data", "dev_data", "exp_dir", "env", "optim"),
        extra=("init_from", "init_encoder_from", "rnnt_time_chunk"))
    for key in ("init_from", "init_encoder_from"):
        source = cfg["train"].get(key)
        if source and not Path(source).exists():
            raise FileNotFoundError(f"train.{key}: {source}: no such model folder or checkpoint")


def data_source(path, audio_root):
    """A ``shards.list`` is streamed as is; any other list is read into manifest rows."""
    return path if Path(path).name == SHARD_LIST else read_manifest(path, audio_root)


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    env = init_distributed(args.device)
    logging.basicConfig(level=logging.INFO if env.is_main else logging.WARNING,
                        format=f"%(asctime)s [rank {env.rank}] %(levelname)s %(message)s")
    exp = Path(args.exp_dir)
    try:
        cfg = load_experiment(args.config, args.override)
        check_experiment(cfg)
        if (exp / "checkpoints" / "latest").exists() and not args.resume:
            raise ConfigError(f"{exp} already has checkpoints: pass --resume to continue it, "
                              "or choose a new --exp_dir (use train.init_from to start from "
                              "trained weights)")
        seed = int(cfg["train"].get("seed", 0))
        torch.manual_seed(seed)
        data_conf = dict(cfg["data"])
        source = cfg["tokenizer"].get("path") or (
            None if is_bestrq(cfg["model"]) else cfg["train"].get("init_from"))
        tokenizer = load_tokenizer(source) if source else None  # none: audio-only pretraining
        paths = {k: data_conf.pop(k, None) for k in DATA_PATHS}
        sources = {split: data_source(paths[split], paths["audio_root"])
                   for split in ("train", "dev") if paths[split]}
        if is_multitask(cfg["model"]) and isinstance(sources.get("train"), list):
            # heads without classes take them from the training list (shards: list them)
            cfg["model"] = collect_classes(cfg["model"], sources["train"])
        model = build_model(cfg, tokenizer).to(env.device)
        labels = label_fields(model) if is_multitask(cfg["model"]) else None
        train_data, dev_data = (
            build_data(sources[split], tokenizer, data_conf, seed, env.rank, env.world_size,
                       train=split == "train", feats_scp=paths[f"{split}_feats_scp"],
                       label_fields=labels) if split in sources else None
            for split in ("train", "dev"))
        if train_data is None:
            raise ConfigError("data.train is required")
        train_conf = check_keys("train", {**training_contexts(cfg), "optim": cfg["optim"]},
                                Trainer)
        exp.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(model, tokenizer, train_data, dev_data, exp, env, **train_conf)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    if env.is_main:
        with open(exp / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f, allow_unicode=True, sort_keys=False)
        save_folder(model, exp / "model_template", weights=False)  # for averaging
        for line in trainable_summary(model):
            logging.info("%s", line)
        if trainer.frozen:
            logging.info("frozen: %d tensors (%s …)", len(trainer.frozen), trainer.frozen[0])
        elif train_conf.get("freeze"):
            logging.info("frozen for the first %d steps: %s", train_conf["freeze_steps"],
                         ", ".join(train_conf["freeze"]))
        if trainer.untrained:
            logging.info("not trained by this loss (frozen, weights kept): %d tensors (%s …)",
                         len(trainer.untrained), trainer.untrained[0])
    if args.resume and not trainer.resume():
        logging.info("--resume: no checkpoint in %s yet, starting fresh", exp)
    try:
        metrics = trainer.fit()
    except (Preempted, DataError) as e:
        trainer.ddp = None
        shutdown(env)
        preempted = isinstance(e, Preempted)
        if env.is_main:
            print(f"{'preempted' if preempted else 'error'}: {e}", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT if preempted else 1)
    trainer.ddp = None  # its reducer holds the process group, which shutdown tears down
    shutdown(env)
    if env.is_main:
        print(f"done: step {trainer.step}, dev {metrics}; checkpoints in {trainer.ckpt.dir}, "
              f"tensorboard: {exp / 'tensorboard'}")


if __name__ == "__main__":
    main()
