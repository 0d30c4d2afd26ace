"""Turn long recordings with one transcript each into training segments by CTC forced alignment.

    python -m chunkformer.bin.segment_recordings --model_dir exp/default/final \
        --data data/calls/calls.list --output_dir data/calls_segments \
        --min_pause 0.6 --max_seconds 20 --min_score 0.5

``--data`` is any list with audio and transcript per row: a whole recording, or a rough
segment of one (``start`` / ``end``), on one ``channel`` when the row names it. Each row's
transcript is aligned to its audio with the model (``torchaudio.functional.forced_align``; long
recordings are encoded chunk by chunk in bounded memory), cut into segments at pauses
(``--min_pause``), none longer than ``--max_seconds``, each scored by the mean posterior of its
aligned frames, and its ends moved to the speech onset and offset in the frame energies near
them (:mod:`chunkformer.decoding.alignment`). Writes ``<output_dir>/segments.list``
(jsonl rows with ``start`` / ``end`` in the original file, transcript, ``group`` = the source
row's group, its channel, speaker and labels, and ``score``: every tool reads it) and
``rejected.tsv`` (key, start, end, score, reason, text: segments under ``--min_score``, and rows
that could not be aligned at all or whose whole alignment scores under
``--min_recording_score``, a transcript that is not this audio's, with the reason).
"""
import argparse
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from chunkformer.bin.common import tool_main
from chunkformer.data.audio import SAMPLE_RATE, AudioError, audio_duration, load_row
from chunkformer.data.manifest import read_manifest
from chunkformer.data.text import normalize_text
from chunkformer.data.tokenizer import load_tokenizer
from chunkformer.data.utterance import Utterance, utterance_to_json
from chunkformer.decoding.alignment import (AlignedSegment, AlignmentError, align_words,
                                            ctc_emissions, cut_at_pauses, snap_to_speech)
from chunkformer.model import ChunkFormerModel


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_dir", required=True, help="released-layout model folder")
    p.add_argument("--data", required=True, help="list of recordings with transcripts")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--min_pause", type=float, default=0.6,
                   help="seconds between the CTC spikes of two words where a segment may end")
    p.add_argument("--max_seconds", type=float, default=20.0,
                   help="longest segment; longer pieces are cut at their longest pauses")
    p.add_argument("--min_score", type=float, default=0.5,
                   help="segments whose mean aligned-frame posterior is lower are rejected")
    p.add_argument("--min_recording_score", type=float, default=0.4,
                   help="a row whose whole alignment scores lower is rejected whole: its "
                        "transcript does not match its audio")
    p.add_argument("--pad_start", type=float, default=0.05,
                   help="seconds a segment starts before its first word's first CTC frame, "
                        "when no speech onset is found near it")
    p.add_argument("--pad_end", type=float, default=0.2,
                   help="seconds a segment ends after its last word's last CTC frame, when no "
                        "speech offset is found near it")
    p.add_argument("--margin", type=float, default=0.05,
                   help="seconds a segment reaches beyond the speech onset and offset found "
                        "in the frame energies")
    p.add_argument("--chunk_size", type=int, default=64,
                   help="context of recordings longer than --full_context_seconds")
    p.add_argument("--left_context_size", type=int, default=128)
    p.add_argument("--right_context_size", type=int, default=128)
    p.add_argument("--full_context_seconds", type=float, default=600,
                   help="recordings up to this long are encoded in full context, longer ones "
                        "chunk by chunk (bounded memory)")
    p.add_argument("--num_threads", type=int, default=0, help="torch threads (0: default)")
    return p


def segment_rows(row: Utterance, segments, min_score: float):
    """(kept rows, rejected (start, end, score, reason, text)) of one source row."""
    kept, rejected = [], []
    for n, seg in enumerate(segments):
        if seg.score < min_score:
            rejected.append((seg.start, seg.end, seg.score,
                             f"low score: {seg.score:.3f} < {min_score}", seg.text))
            continue
        kept.append(Utterance(f"{row.key}-{n:04d}", row.audio, seg.text, seg.start, seg.end,
                              round(seg.end - seg.start, 3), row.speaker, row.group,
                              dict(row.labels, score=round(seg.score, 4)), row.channel))
    return kept, rejected


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    rows = read_manifest(args.data)
    model = ChunkFormerModel.from_pretrained(args.model_dir).eval()
    tokenizer = load_tokenizer(args.model_dir)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept_total, seconds, rejected_total = 0, 0.0, []
    with open(out / "segments.list", "w", encoding="utf-8") as seg_file:
        for row in tqdm(rows, desc="align", unit="rec"):
            text = normalize_text(row.text or "")
            ids, unknown = tokenizer.encode(text)
            try:
                if not ids:
                    raise AlignmentError("empty transcript")
                if unknown:
                    raise AlignmentError("unknown characters: " + " ".join(
                        repr(c) for c in sorted(set(unknown))))
                if row.start is None and row.end is None:  # streamed from the file
                    audio, rate, channel = row.audio, None, row.channel
                else:  # the segment's samples (of the row's channel)
                    audio, rate, channel = load_row(row), SAMPLE_RATE, None
                seconds_long = audio_duration(audio) if isinstance(audio, str) \
                    else audio.numel() / SAMPLE_RATE
                chunked = seconds_long > args.full_context_seconds
                log_probs, energy = ctc_emissions(model, audio, rate, channel,
                                                  args.chunk_size if chunked else 0,
                                                  args.left_context_size,
                                                  args.right_context_size)
                words = align_words(log_probs, ids, model.vocab)
                whole = AlignedSegment(words, 0.0, 0.0).score
                if whole < args.min_recording_score:
                    raise AlignmentError(f"transcript does not match the audio: score "
                                         f"{whole:.3f} < {args.min_recording_score}")
            except (AlignmentError, AudioError) as e:
                rejected_total.append((row.key, row.start, row.end, None, str(e), text))
                continue
            segments = cut_at_pauses(words, args.min_pause, args.max_seconds, args.pad_start,
                                     args.pad_end, offset=row.start or 0.0)
            segments = snap_to_speech(segments, energy,
                                      offset=row.start or 0.0, margin=args.margin)
            kept, rejected = segment_rows(row, segments, args.min_score)
            rejected_total += [(row.key, *r) for r in rejected]
            for seg in kept:
                seg_file.write(json.dumps(utterance_to_json(seg), ensure_ascii=False) + "\n")
            kept_total += len(kept)
            seconds += sum(s.duration for s in kept)
    with open(out / "rejected.tsv", "w", encoding="utf-8") as f:
        f.write("key\tstart\tend\tscore\treason\ttext\n")
        for key, start, end, score, reason, text in rejected_total:
            cells = [key, "" if start is None else f"{start:.3f}",
                     "" if end is None else f"{end:.3f}",
                     "" if score is None else f"{score:.3f}", reason, text]
            f.write("\t".join(cells) + "\n")
    print(f"{len(rows)} recordings: {kept_total} segments kept ({seconds / 3600:.2f} h), "
          f"{len(rejected_total)} rejected (see {out / 'rejected.tsv'}) → "
          f"{out / 'segments.list'}")


if __name__ == "__main__":
    main()
