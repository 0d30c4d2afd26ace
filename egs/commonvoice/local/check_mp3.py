"""Stage 0 check: decode the first clip of a Common Voice table, so that a libsndfile without
MP3 support (older than 1.1) fails here with the fix, not later as thousands of skipped rows.
Reads only the table's header and first row (no torch import: this is instant).

    python local/check_mp3.py data/local/train.tsv /corpora/cv/vi/clips
"""
import csv
import sys
from pathlib import Path

import soundfile


def main(table, clips):
    with open(table, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        first = next(reader, None)
    if not header or "path" not in header or "sentence" not in header:
        sys.exit(f"{table}: not a Common Voice table (needs the columns path and sentence)")
    if first is None:
        sys.exit(f"{table}: no rows")
    clip = Path(clips) / first[header.index("path")]
    try:
        info = soundfile.info(str(clip))
        soundfile.read(str(clip), frames=info.samplerate)
    except Exception as e:  # the message names the fix; the error says what failed
        sys.exit(f"cannot decode {clip}: {e}\nlibsndfile {soundfile.__libsndfile_version__} "
                 "here; MP3 needs libsndfile >= 1.1 (pip install -U soundfile ships one)")
    print(f"{table}: {clip.name} decodes ({info.duration:.2f} s, {info.samplerate} Hz)")


if __name__ == "__main__":
    main(*sys.argv[1:])
