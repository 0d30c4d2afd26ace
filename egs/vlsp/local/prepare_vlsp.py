"""Stage 0: one split of a VLSP release → a Kaldi data dir (``wav.scp``, ``text``) that
``prepare_data`` reads. Two layouts (README.md):

- audio with same-named transcripts: ``<split>/**/<name>.wav`` + ``<split>/**/<name>.txt``
  (VLSP 2020 ASR; any audio format ``read_manifest`` scans). Key: the path below ``<split>``
  without extension, ``/`` → ``-``, whitespace → ``_``. Audio without a transcript is counted
  and listed.
- a Kaldi data dir (``<split>/wav.scp``, ``text``, optional ``segments``, ``utt2spk``,
  ``utt2dur``): copied, with ``wav.scp`` paths made absolute.

    python local/prepare_vlsp.py /corpora/vlsp2020/train data/local/train
"""
import os
import shutil
import sys
from pathlib import Path

from chunkformer.data.manifest import ManifestError, read_manifest

KALDI_FILES = ("text", "segments", "utt2spk", "utt2dur")


def from_kaldi(src: Path, out: Path) -> int:
    lines = []
    for n, line in enumerate(src.joinpath("wav.scp").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            sys.exit(f"{src / 'wav.scp'}:{n}: expected '<recording> <path>'")
        path = parts[1].strip()
        if not path.endswith("|"):  # a piped command is left for prepare_data to refuse
            path = os.path.abspath(src / path)
        lines.append(f"{parts[0]} {path}\n")
    out.joinpath("wav.scp").write_text("".join(lines), encoding="utf-8")
    for name in KALDI_FILES:
        if src.joinpath(name).is_file():
            shutil.copyfile(src / name, out / name)
    return len(lines)


def from_pairs(src: Path, out: Path) -> int:
    """Audio files with same-named .txt transcripts (read_manifest's folder rule) → wav.scp, text."""
    try:
        rows = read_manifest(src)
    except ManifestError as e:
        sys.exit(f"error: {e}")
    paired = [r for r in rows if r.text is not None]
    missing = [r.audio for r in rows if r.text is None]
    out.joinpath("wav.scp").write_text("".join(f"{r.key} {r.audio}\n" for r in paired),
                                       encoding="utf-8")
    out.joinpath("text").write_text("".join(f"{r.key} {r.text}\n" for r in paired),
                                    encoding="utf-8")
    if missing:
        out.joinpath("no_transcript.txt").write_text("\n".join(missing) + "\n", encoding="utf-8")
        print(f"{src}: {len(missing)} audio files without a .txt transcript, left out "
              f"(listed in {out / 'no_transcript.txt'})")
    return len(paired)


def main(src, out):
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kaldi = src.joinpath("wav.scp").is_file()
    n = from_kaldi(src, out) if kaldi else from_pairs(src, out)
    print(f"{src} ({'Kaldi dir' if kaldi else 'audio + .txt'}): {n} recordings → {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
