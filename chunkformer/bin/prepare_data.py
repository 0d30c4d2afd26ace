"""Check a list of utterances and write a clean jsonl ``data.list``: every row validated, its
duration read from the audio header, its transcript normalised.

    python -m chunkformer.bin.prepare_data --data /corpora/cv-corpus/vi/train.tsv \
        --audio_root /corpora/cv-corpus/vi/clips --output data/train/data.list --require_text

``--data`` is anything ``chunkformer.data.manifest.read_manifest`` reads (jsonl, JSON array,
Kaldi data dir, TSV/CSV, folder of audio). A malformed list stops with ``file:line: problem``.
Rows whose audio is missing or unreadable, whose segment lies outside the audio, or (with
``--require_text``) whose transcript is missing or empty once normalised, are left out, counted
by reason and listed in ``<output>.skipped.tsv``. The transcript as written is kept in
``labels["raw_text"]`` where normalisation changed it.

Numbers are written out as they are said (``--numbers spoken``, the default; ``keep`` leaves
digits, which the released vocabulary cannot spell): amounts, dates, times, percentages,
phone and account numbers digit by digit (:mod:`chunkformer.data.numbers`), with the
regional words of ``--region`` (north: nghìn, lẻ; south: ngàn, linh) and ``--four`` (4 after
tens: tư or bốn). The summary says how many rows were verbalised.
"""
import argparse
import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Optional, Tuple

from tqdm import tqdm

from chunkformer.bin.common import add_key_mode_option, tool_main
from chunkformer.data.audio import AudioError, audio_duration
from chunkformer.data.manifest import Utterance, read_manifest, write_manifest
from chunkformer.data.skips import SkipLog
from chunkformer.data.numbers import has_digits, spoken_text
from chunkformer.data.utterance import DURATION_TOLERANCE


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="any supported list, data dir or folder")
    p.add_argument("--audio_root", default=None,
                   help="folder relative audio paths start from (default: the list's folder)")
    p.add_argument("--output", required=True, help="jsonl data.list to write")
    p.add_argument("--require_text", action="store_true",
                   help="leave out rows without a non-empty transcript (training lists)")
    p.add_argument("--num_workers", type=int, default=4, help="threads reading audio headers")
    p.add_argument("--numbers", default="spoken", choices=("spoken", "keep"),
                   help="write numbers out as Vietnamese speakers say them, or keep digits")
    p.add_argument("--region", default="north", choices=("north", "south"),
                   help="nghìn / lẻ (north) or ngàn / linh (south)")
    p.add_argument("--four", default="tư", choices=("tư", "bốn"), help="4 after tens ≥ 20")
    add_key_mode_option(p, "<output>.skipped.tsv")
    return p


def prepare_row(row: Utterance, require_text: bool, numbers: str = "spoken",
                region: str = "north", four: str = "tư") -> Tuple[Optional[Utterance], str]:
    """→ (the row with duration and normalised text, "") or (None, why it is left out)."""
    try:
        total = audio_duration(row.audio)
    except AudioError as e:
        return None, str(e)
    start = row.start or 0.0
    if total == 0:
        return None, "empty audio"
    if start >= total:
        return None, f"segment starts at {start} s, after the end of the audio ({total:.2f} s)"
    end = row.end
    if end is not None and end > total + DURATION_TOLERANCE:
        return None, f"segment ends at {end} s, after the end of the audio ({total:.2f} s)"
    if end is not None:
        end = min(end, total)  # a rounding overshoot
    labels, text = dict(row.labels), row.text
    if text is not None:
        text = spoken_text(row.text, numbers, region, four)
        if text != row.text:
            labels.setdefault("raw_text", row.text)
    if require_text and not text:
        return None, "no transcript" if text is None else "empty transcript"
    duration = (total if end is None else end) - start
    return dataclasses.replace(row, text=text, end=end, duration=duration, labels=labels), ""


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    rows = read_manifest(args.data, args.audio_root)
    work = partial(prepare_row, require_text=args.require_text, numbers=args.numbers,
                   region=args.region, four=args.four)
    with ThreadPoolExecutor(max(1, args.num_workers)) as pool:
        results = list(tqdm(pool.map(work, rows), total=len(rows), unit="utt", desc="prepare",
                            file=sys.stderr))
    kept = [clean for clean, _ in results if clean is not None]
    skips = SkipLog((row, reason) for row, (clean, reason) in zip(rows, results) if clean is None)
    output = Path(args.output)
    write_manifest(output, kept)
    skips.write(output.with_name(output.name + ".skipped.tsv"), args.key_mode)
    hours = sum(r.duration for r in kept) / 3600
    spoken = 0 if args.numbers == "keep" else \
        sum(1 for r in kept if has_digits(r.labels.get("raw_text", "")))
    print(f"kept {len(kept)} of {len(rows)} utterances ({hours:.2f} h), {skips.summary()}, "
          f"numbers written out in {spoken} rows → {output}")
    if not kept:
        sys.exit(1)


if __name__ == "__main__":
    main()
