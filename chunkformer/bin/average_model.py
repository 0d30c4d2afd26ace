"""Average the weights of the last (or best) N checkpoints into a released-layout model folder.

    python -m chunkformer.bin.average_model --exp_dir exp/small --num 5 --mode best \
        --out exp/small/final

``best`` ranks checkpoints by a dev metric of the validation history (``--metric``; default
the experiment's ``train.best_metric``, e.g. ``cer_low`` for the low-latency context's CER,
else the dev loss); ``last`` takes the newest. The
output loads with ``ChunkFormerModel.from_pretrained`` and ``recognize --model_dir`` (a BEST-RQ
experiment's with ``BestRQModel.from_pretrained``, and fine-tuning reads its encoder through
``train.init_encoder_from``).
"""
import argparse
import logging
import shutil
import sys
from pathlib import Path

import torch

from chunkformer.bin.common import tool_main
from chunkformer.config import load_yaml
from chunkformer.folders import load_model_folder
from chunkformer.heads.adapters import save_trainable
from chunkformer.heads.multitask import ADAPTER_FILE
from chunkformer.pretrained import WEIGHT_FILES
from chunkformer.training.checkpoint import CheckpointDir, average_state_dicts


@tool_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--num", type=int, default=5)
    p.add_argument("--mode", choices=("last", "best"), default="best")
    p.add_argument("--metric", default=None,
                   help="dev metric of --mode best (loss, cer, cer_<context>…; default: the "
                        "experiment's train.best_metric, else loss)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    exp = Path(args.exp_dir)
    if not (exp / "checkpoints").is_dir():
        sys.exit(f"error: {exp}: no checkpoints folder (is it a train --exp_dir?)")
    ckpt = CheckpointDir(exp)
    metric = args.metric or ((load_yaml(exp / "config.yaml").get("train") or {}).get(
        "best_metric", "loss") if (exp / "config.yaml").is_file() else "loss")
    steps = ckpt.best(args.num, metric=metric) if args.mode == "best" else \
        ckpt.steps()[-args.num:]
    if args.mode == "best" and not steps:
        logging.warning("no validation history of %s: averaging the last %d instead", metric,
                        args.num)
        steps = ckpt.steps()[-args.num:]
    if not steps:
        sys.exit(f"error: {ckpt.dir} has no checkpoints")
    template = exp / "model_template"
    if not (template / "config.yaml").is_file():
        sys.exit(f"error: {template} missing (written by chunkformer.bin.train)")
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(template, tmp)
    torch.save(average_state_dicts([ckpt.path(s) for s in steps]), tmp / WEIGHT_FILES[0])
    model = load_model_folder(tmp)  # strict check before it replaces anything
    if model.config.get("adapters"):  # also the small file of what trained, for a base model
        save_trainable(model, tmp / ADAPTER_FILE)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"averaged {len(steps)} checkpoints (steps {', '.join(map(str, steps))}) → {out}")


if __name__ == "__main__":
    main()
