"""Export encoder embeddings once, for heads, clustering and analytics to reuse.

    python -m chunkformer.bin.extract_embeddings --model_dir exp/default/final \
        --data data/calls.list --output_dir exp/emb --layer final

Per utterance (call): ``frames/<key>.npy`` (T' × D frame embeddings, 80 ms each, from the
final output, block ``--layer N`` or the learned weighted sum of a task model's layers) and
``pooled/<key>.npy`` (D, their mean), and a row of ``index.tsv`` (key, frames path, pooled
path, seconds, shape). ``--format ark`` writes Kaldi ``frames.scp``/``pooled.scp`` (kaldiio)
instead. With ``--chunk_size`` > 0 a call goes through the chunked encoder segment by segment
(caches carried, as endless decoding), so memory does not grow with its length; 0 encodes it
in full context at once. A rerun skips the keys the index already lists; unreadable audio is
listed in ``skipped.tsv`` and the rest goes on. A two-channel call (agent and customer on their
own sides) is embedded side by side (``--channels split``, the default): keys ``<key>@ch0``,
``<key>@ch1``; ``--channels mix`` embeds the channels' mean; a row naming its ``channel``
embeds that one.
"""
import argparse
import logging
import sys
from pathlib import Path
from urllib.parse import quote

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from chunkformer.bin.common import tool_main
from chunkformer.data.audio import (INT16_SCALE, SAMPLE_RATE, AudioError, FbankStream,
                                    load_row, split_channels)
from chunkformer.data.manifest import read_manifest
from chunkformer.decoding.endless import encode_long
from chunkformer.folders import load_model_folder

INDEX = "index.tsv"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_dir", required=True, help="any model folder (ASR, SSL, task)")
    p.add_argument("--data", required=True, help="any supported list")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--layer", default="final",
                   help="final | weighted (a task model's layer weights) | block index 0..N-1")
    p.add_argument("--format", default="npy", choices=("npy", "ark"))
    p.add_argument("--channels", default="split", choices=("split", "mix"),
                   help="multi-channel files: each channel on its own (<key>@ch<c>), or their "
                        "mean")
    p.add_argument("--chunk_size", type=int, default=64, help="0: full context at once")
    p.add_argument("--left_context_size", type=int, default=128)
    p.add_argument("--right_context_size", type=int, default=128)
    p.add_argument("--total_batch_duration", type=float, default=600,
                   help="seconds of audio per encoder segment (bounds memory)")
    p.add_argument("--num_threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p


def select(layer: str, model, enc, blocks):
    """The frames to export from the final output and the block outputs."""
    if layer == "final":
        return enc
    if layer == "weighted":
        return model.layer_weights(blocks)
    return blocks[int(layer)]


def check_layer(layer: str, model):
    if layer == "final":
        return
    if layer == "weighted":
        if getattr(model, "layer_weights", None) is None:
            sys.exit("error: --layer weighted needs a task model with learned layer weights")
        return
    if not layer.isdigit() or int(layer) >= model.encoder.num_blocks:
        sys.exit(f"error: --layer {layer!r}: use final, weighted or a block index "
                 f"0..{model.encoder.num_blocks - 1}")


@torch.no_grad()
def embed(model, row, args) -> np.ndarray:
    """One row → (T', D) float32 frame embeddings."""
    need_blocks = args.layer != "final"
    whole = row.start is None and row.end is None
    stream = FbankStream(row.audio, channel=row.channel) if whole else FbankStream(
        load_row(row) / INT16_SCALE, SAMPLE_RATE)
    if args.chunk_size <= 0:
        feats = stream.read(0, stream.num_frames).to(args.device)
        out = model.encoder(feats[None], torch.tensor([feats.size(0)]), 0, 0, 0,
                            return_layers=need_blocks)
        enc, blocks = out[0][0], [b[0] for b in out[2]] if need_blocks else None
        return select(args.layer, model, enc, blocks).float().cpu().numpy()
    pieces = []
    for item in encode_long(model, stream, args.chunk_size, args.left_context_size,
                            args.right_context_size, args.total_batch_duration,
                            layers=need_blocks):
        enc, blocks = item[1], item[2] if need_blocks else None
        pieces.append(select(args.layer, model, enc, blocks).float().cpu().numpy())
    if not pieces:
        raise AudioError(f"{row.audio}: too short for one encoder frame")
    return np.concatenate(pieces)


def file_name(key: str) -> str:
    """A key as a file name (``/`` and other unsafe characters percent-encoded)."""
    return quote(key, safe="-_.")


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    rows = read_manifest(args.data)
    if args.channels == "split":
        rows = [side for row in rows for side in split_channels(row)]
    model = load_model_folder(args.model_dir, args.device)
    check_layer(args.layer, model)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    done = set()
    if index.is_file():
        lines = index.read_text(encoding="utf-8").splitlines()[1:]
        done = {line.split("\t", 1)[0] for line in lines}
    else:
        index.write_text("key\tframes\tpooled\tseconds\tshape\n", encoding="utf-8")
    todo = [r for r in rows if r.key not in done]
    logging.info("%d utterances, %d already exported, %d to do", len(rows), len(done), len(todo))
    writers = None
    if args.format == "ark" and todo:
        run = sum(1 for _ in out.glob("frames.*.ark"))  # a new ark per run; scp appended
        writers = [kaldiio.WriteHelper(f"ark,scp:{out}/{name}.{run}.ark,{out}/{name}.{run}.scp")
                   for name in ("frames", "pooled")]
    skipped = []
    with open(index, "a", encoding="utf-8") as table:
        for row in tqdm(todo, unit="utt", disable=not todo):
            try:
                frames = embed(model, row, args)
            except AudioError as e:
                skipped.append(f"{row.key}\t{e}")
                continue
            pooled = frames.mean(axis=0)
            seconds = frames.shape[0] * 0.08
            if writers:
                writers[0](row.key, frames)
                writers[1](row.key, pooled)
                paths = ("frames.scp", "pooled.scp")  # look the key up there
            else:
                paths = (f"frames/{file_name(row.key)}.npy", f"pooled/{file_name(row.key)}.npy")
                for rel, array in zip(paths, (frames, pooled)):
                    (out / rel).parent.mkdir(exist_ok=True)
                    tmp = out / (rel + ".tmp.npy")
                    np.save(tmp, array)
                    tmp.replace(out / rel)
            duration = row.duration if row.duration is not None else seconds
            table.write(f"{row.key}\t{paths[0]}\t{paths[1]}\t{duration:.3f}\t"
                        f"{frames.shape[0]}x{frames.shape[1]}\n")
            table.flush()
    if writers:
        for w in writers:
            w.close()
        for name in ("frames", "pooled"):  # one scp over every run's arks
            with open(out / f"{name}.scp", "w", encoding="utf-8") as f:
                for piece in sorted(out.glob(f"{name}.*.scp")):
                    f.write(piece.read_text(encoding="utf-8"))
    if skipped:
        with open(out / "skipped.tsv", "a", encoding="utf-8") as f:
            f.write("\n".join(skipped) + "\n")
    print(f"exported {len(todo) - len(skipped)}, skipped {len(skipped)}, already there "
          f"{len(done)} → {index}")


if __name__ == "__main__":
    main()
