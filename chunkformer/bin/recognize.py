"""Decode audio with a ChunkFormer model folder.

    python -m chunkformer.bin.recognize --model_dir exp/default/final \
        --data data/test/wav.scp --output_dir exp/default/decode_test \
        --mode ctc_greedy --chunk_size 64 --left_context_size 128 --right_context_size 128

``--data`` is one audio file, a folder of audio files, a Kaldi data dir / ``wav.scp`` (with
``segments`` and ``text`` beside it when present) or a jsonl ``data.list``. Recordings up to
``--long_form_threshold`` seconds are decoded in masked batches of ``--total_batch_duration``
seconds; longer ones chunk by chunk with caches (bounded memory, same result). Writes
``<output_dir>/text``, ``result.jsonl`` (word timings), ``skipped.tsv`` and, with references,
``errors.tsv``; ``--srt`` adds one subtitle file per recording. Unreadable items are reported
and skipped; the exit code is non-zero only if nothing could be decoded.

Calls recorded on two channels (agent on one side, customer on the other): ``--channels mix``
(the default) decodes their mean; ``--channels split`` decodes each channel of a multi-channel
file on its own and writes one time-ordered transcript per recording, whose segments and words
carry their ``channel`` (and ``role``, with ``--channel_roles agent,customer``), so speech on
both sides at once is kept on both. A row that names its ``channel`` is decoded on that channel
alone either way.

Beam modes take hotwords and a word language model: ``--hotwords FILE`` (one phrase a line,
optional ``<TAB>boost``), ``--lm lm.arpa`` with ``--lm_weight`` / ``--word_bonus`` (from
``tune_decoding``); ``--nbest N`` writes ``nbest.jsonl``: the N best hypotheses of each
recording (or channel) with their scores.

``--backend onnx`` (or ``onnx_int8``) decodes with the graphs ``export_onnx`` wrote (``--model_dir``
is then that folder) on onnxruntime: greedy CTC in full context or in the exported chunk/left
context with right context 0, the same text as the PyTorch model.

Call ids may carry phone numbers: ``--key_mode hash`` writes every id (and audio path) hashed, in
the outputs, reports and logs alike, so files still join on it; ``--key_mode omit`` leaves ids
and paths out of logs and ``skipped.tsv``, and names utterances in ``text``, ``result.jsonl``,
``errors.tsv`` and SRT files by their 1-based position in the input list.
"""
import argparse
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from chunkformer.bin.common import add_key_mode_option, tool_main, user_error_message
from chunkformer.data.audio import (INT16_SCALE, SAMPLE_RATE, AudioError, FbankStream,
                                    audio_duration, load_row, split_channels)
from chunkformer.data.manifest import ManifestError, display_key, read_manifest, read_text
from chunkformer.data.numbers import inverse_numbers
from chunkformer.data.skips import SkipLog
from chunkformer.decoding.batch import (ALL_MODES, check_mode, decode_features, frame_budget,
                                         resolve_mode, set_max_symbols)
from chunkformer.decoding.channels import merge_channels, parse_roles
from chunkformer.decoding.endless import decode_long
from chunkformer.decoding.metrics import score
from chunkformer.model import ChunkFormerModel


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_dir", required=True,
                   help="released-layout model folder (an export_onnx folder with --backend "
                        "onnx / onnx_int8)")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx", "onnx_int8"),
                   help="onnx: the exported graphs on onnxruntime (ctc_greedy, full context or "
                        "the exported chunk/left context with right context 0)")
    p.add_argument("--data", required=True, help="audio file, folder, wav.scp/data dir, jsonl")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--mode", default=None, choices=ALL_MODES,
                   help="default: the model's greedy mode (ctc_greedy; rnnt_greedy for a "
                        "transducer); rnnt_*: transducer models only")
    p.add_argument("--chunk_size", type=int, default=64, help="≤ 0: full context")
    p.add_argument("--left_context_size", type=int, default=128)
    p.add_argument("--right_context_size", type=int, default=128)
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--max_symbols", type=int, default=None,
                   help="rnnt_* modes: symbols one 80 ms frame may emit at most (default: the "
                        "reference's 64; a few bound a runaway repetition on one frame)")
    p.add_argument("--hotwords", default=None,
                   help="beam modes: file of phrases to boost (one a line, optional <TAB>boost)")
    p.add_argument("--lm", default=None, help="beam modes: word n-gram LM (ARPA, .arpa.gz)")
    p.add_argument("--lm_weight", type=float, default=0.5, help="weight of the LM's ln p")
    p.add_argument("--word_bonus", type=float, default=0.0, help="added per word with --lm")
    p.add_argument("--nbest", type=int, default=0,
                   help="beam modes: write the N best hypotheses with scores to nbest.jsonl")
    p.add_argument("--ctc_weight", type=float, default=0.5, help="attention rescoring")
    p.add_argument("--reverse_weight", type=float, default=0.0, help="bitransformer only")
    p.add_argument("--total_batch_duration", type=float, default=1800,
                   help="seconds of audio per masked batch")
    p.add_argument("--long_form_threshold", type=float, default=600,
                   help="recordings longer than this many seconds are decoded chunk by chunk")
    p.add_argument("--max_silence_duration", type=float, default=0.5,
                   help="silence (s) that splits SRT/segment output")
    p.add_argument("--reference", default=None,
                   help="Kaldi text file with references (else the list's own transcripts)")
    p.add_argument("--srt", action="store_true", help="also write <output_dir>/srt/<key>.srt")
    p.add_argument("--inverse_numbers", action="store_true",
                   help="write spoken numbers as digits in text, result.jsonl and SRT "
                        "(\"một triệu hai trăm nghìn đồng\" → \"1.200.000 đồng\"); scoring "
                        "still compares the spoken form")
    p.add_argument("--channels", default="mix", choices=("mix", "split"),
                   help="multi-channel files: decode the channels' mean, or each channel alone "
                        "into one time-ordered transcript")
    p.add_argument("--channel_roles", default=None,
                   help="with --channels split: names of channels 0, 1, … (agent,customer)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="autocast dtype (softmax and CTC stay float32)")
    p.add_argument("--num_threads", type=int, default=0, help="torch threads (0: default)")
    add_key_mode_option(p, "outputs, reports and logs (omit: outputs number them)")
    return p


class Recognizer:
    """Decode items one masked batch (or one long recording) at a time, writing as it goes."""

    def __init__(self, model, args, out: Path, bias=None):
        self.model, self.args, self.out, self.bias = model, args, out, bias
        self.text = open(out / "text", "w", encoding="utf-8")
        self.jsonl = open(out / "result.jsonl", "w", encoding="utf-8")
        self.nbest = open(out / "nbest.jsonl", "w", encoding="utf-8") if args.nbest else None
        self.skips = SkipLog()
        self.hyps = {}  # name → hypothesis
        self.names = {}  # key → its name in the outputs
        self.roles = parse_roles(args.channel_roles)
        self.sides = {}  # key of one channel's item → (the recording's item, channel, count)
        self.pending = {}  # recording key → {channel: Transcript} decoded so far
        if args.srt:
            (out / "srt").mkdir(exist_ok=True)

    def split_channels(self, items):
        """Each item of a multi-channel file that names no channel → one item per channel
        (its key ``<key>@ch<c>``); the outputs name the recording as before."""
        out = []
        for position, item in enumerate(items, start=1):
            self.names[item.key] = self.name(item.key, position)
            sides = split_channels(item)
            if len(sides) > 1:
                self.sides.update((s.key, (item, s.channel, len(sides))) for s in sides)
            out += sides
        return out

    def name(self, key: str, position: int) -> str:
        return str(position) if self.args.key_mode == "omit" else display_key(
            key, self.args.key_mode)

    def run(self, items):
        args = self.args
        budget = frame_budget(args.total_batch_duration) * 0.01 * 2  # seconds per batch
        batch, batch_secs = [], 0.0
        with tqdm(total=len(items), unit="utt", desc="recognize", file=sys.stderr) as bar:
            for position, item in enumerate(items, start=1):
                self.names.setdefault(item.key, self.name(item.key, position))
                try:
                    duration = self.duration(item)
                    if duration > args.long_form_threshold:
                        self.emit(item, self.decode_long(item))
                        bar.update(1)
                        continue
                    feats = self.model.features(item.audio, start=item.start, end=item.end,
                                                channel=item.channel)
                except AudioError as e:
                    self.skip(item, str(e))
                    bar.update(1)
                    continue
                batch.append((item, feats))
                batch_secs += duration
                if batch_secs >= budget:
                    bar.update(self.flush(batch))
                    batch, batch_secs = [], 0.0
            bar.update(self.flush(batch))
        self.finish()

    @property
    def onnx(self) -> bool:
        return self.args.backend != "torch"

    def decode_long(self, item):
        """Chunk by chunk with caches; a file (or one channel of it) is streamed from disk, a
        segment of one is loaded (as a [-1, 1] waveform: int16-scale samples / 32768, exact)."""
        args = self.args
        source, rate, channel = item.audio, None, item.channel
        if item.start is not None or item.end is not None:
            source, rate, channel = load_row(item) / INT16_SCALE, SAMPLE_RATE, None
        if self.onnx:
            return self.model.decode_long(FbankStream(source, rate, channel=channel),
                                          args.chunk_size, args.left_context_size,
                                          args.right_context_size)
        return decode_long(self.model, source, args.chunk_size, args.left_context_size,
                           args.right_context_size, args.total_batch_duration, args.mode,
                           args.beam_size, sample_rate=rate, ctc_weight=args.ctc_weight,
                           reverse_weight=args.reverse_weight, channel=channel, bias=self.bias)

    def duration(self, item) -> float:
        if item.start is not None and item.end is not None:
            return item.end - item.start
        return audio_duration(item.audio) - (item.start or 0.0)

    def flush(self, batch) -> int:
        if not batch:
            return 0
        args = self.args
        if self.onnx:
            results = self.model.decode([f for _, f in batch], args.chunk_size,
                                        args.left_context_size, args.right_context_size)
            for (item, _), result in zip(batch, results):
                self.emit(item, result)
            return len(batch)
        results = decode_features(self.model, [f for _, f in batch], args.chunk_size,
                                  args.left_context_size, args.right_context_size, args.mode,
                                  args.beam_size, args.ctc_weight, args.reverse_weight, self.bias)
        for (item, _), result in zip(batch, results):
            self.emit(item, result)
        return len(batch)

    def emit(self, item, result):
        if self.nbest is not None:
            self.write_nbest(item, result)
        if item.key in self.sides:
            call, channel, count = self.sides[item.key]
            got = self.pending.setdefault(call.key, {})
            got[channel] = result
            if len(got) == count:
                self.write(call, merge_channels(self.pending.pop(call.key),
                                                self.args.max_silence_duration, self.roles))
            return
        row = result.as_dict()
        row["segments"] = result.segments(self.args.max_silence_duration)
        self.write(item, row)

    def write(self, item, row: dict):
        """One recording's outputs: ``text``, ``result.jsonl`` and SRT lines."""
        row = {"key": self.names[item.key], **{k: v for k, v in row.items() if k != "key"}}
        self.hyps[row["key"]] = row["text"]
        if self.args.inverse_numbers:  # for readers; the references are spoken
            row["text"] = inverse_numbers(row["text"])
            row["segments"] = [{**seg, "decode": inverse_numbers(seg["decode"])}
                               for seg in row["segments"]]
        self.text.write(f"{row['key']} {row['text']}\n")
        self.jsonl.write(json.dumps(row, ensure_ascii=False) + "\n")
        if self.args.srt:
            write_srt(self.out / "srt" / f"{row['key']}.srt", row["segments"])

    def write_nbest(self, item, result):
        """``nbest.jsonl``: one line per recording (per channel with ``--channels split``)."""
        side = self.sides.get(item.key)
        key = self.names[side[0].key if side else item.key]
        vocab = self.model.vocab
        alternatives = []
        for rank, (ranking, hyp) in enumerate(result.nbest[:self.args.nbest], start=1):
            text = vocab.ids_to_text(hyp.ids)
            entry = {"rank": rank, "text": inverse_numbers(text) if self.args.inverse_numbers
                     else text, "score": round(ranking, 4), "ctc_score": round(hyp.score, 4)}
            if self.bias is not None:
                entry["bias"] = round(hyp.bias, 4)
                entry.update({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in self.bias.parts(hyp.ids).items()})
            alternatives.append(entry)
        row = {"key": key, **({"channel": side[1]} if side else {}), "nbest": alternatives}
        self.nbest.write(json.dumps(row, ensure_ascii=False) + "\n")

    def finish(self):
        """Recordings with a channel that could not be decoded: the sides that were."""
        calls = {call.key: call for call, _, _ in self.sides.values()}
        for key, got in self.pending.items():
            logging.warning("%s: only channel(s) %s decoded", self.names[key], sorted(got))
            self.write(calls[key], merge_channels(got, self.args.max_silence_duration,
                                                  self.roles))
        self.pending = {}
        self.text.close()
        self.jsonl.close()
        if self.nbest is not None:
            self.nbest.close()

    def skip(self, item, reason: str):
        self.skips.add(item, reason)
        key, audio, why = self.skips.entries[-1]
        mode = self.args.key_mode
        logging.warning("skipped %s (%s): %s", display_key(key, mode), display_key(audio, mode),
                        why)


def write_srt(path: Path, segments):
    """Subtitles; a segment of a split call starts with its role (or ``ch<c>``)."""
    with open(path, "w", encoding="utf-8") as f:
        for n, seg in enumerate(segments, 1):
            start, end = (seg[k][:8] + "," + seg[k][9:] for k in ("start", "end"))
            who = seg.get("role") or (f"ch{seg['channel']}" if "channel" in seg else "")
            f.write(f"{n}\n{start} --> {end}\n{who + ': ' if who else ''}{seg['decode']}\n\n")


def load_model(args):
    """(the PyTorch model or, with ``--backend onnx``, the ONNX graphs; the decoding bias or
    None); ValueError for a mode, context or option the backend cannot decode with."""
    if args.nbest and args.mode in (None, "ctc_greedy", "rnnt_greedy"):
        raise ValueError("--nbest needs a beam mode (ctc_prefix_beam, attention_rescoring, "
                         "rnnt_beam)")
    if args.nbest > args.beam_size:
        raise ValueError(f"--nbest {args.nbest} > --beam_size {args.beam_size}: the search "
                         "keeps beam_size hypotheses")
    if args.backend == "torch":
        model = ChunkFormerModel.from_pretrained(args.model_dir, args.device)
        logging.info("%s", model.load_report)
        args.mode = resolve_mode(model, args.mode)
        set_max_symbols(model, args.max_symbols)
        bias = model.decoding_bias(args.hotwords, args.lm, args.lm_weight, args.word_bonus)
        check_mode(model, args.mode, bias)
        if bias is not None:
            logging.info("decoding bias: %s", bias.describe())
        return model, bias
    from chunkformer.export.runtime import OnnxModel

    if args.mode not in (None, "ctc_greedy"):
        raise ValueError(f"--backend {args.backend} decodes ctc_greedy only, not {args.mode}")
    args.mode = "ctc_greedy"
    model = OnnxModel(args.model_dir, args.backend == "onnx_int8", args.num_threads)
    set_max_symbols(model, args.max_symbols)  # if given, an error: no transducer in ONNX
    model.check_context(args.chunk_size, args.left_context_size, args.right_context_size)
    return model, None


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    try:
        items = read_manifest(args.data)
        refs = read_text(args.reference) if args.reference else {
            i.key: i.text for i in items if i.text is not None}
    except (ManifestError, FileNotFoundError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    if not items:
        sys.exit(f"error: {args.data}: no audio found")
    try:
        model, bias = load_model(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recognizer = Recognizer(model, args, out, bias)  # a bad --channel_roles: ConfigError
    if args.channels == "split":
        items = recognizer.split_channels(items)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.dtype)
    device_type = torch.device(args.device).type
    with torch.autocast(device_type, dtype=dtype) if dtype else nullcontext():
        recognizer.run(items)
    recognizer.skips.write(out / "skipped.tsv", args.key_mode)
    decoded = len(recognizer.hyps)
    print(f"decoded {decoded}, {recognizer.skips.summary()} → {out / 'text'}")
    if refs:
        summary = score(recognizer.hyps, {recognizer.names[k]: ref for k, ref in refs.items()
                                          if k in recognizer.names}, out / "errors.tsv")
        if summary is None:
            logging.warning("no decoded utterance has a reference: nothing scored")
        else:
            print(summary)
    if decoded == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
