"""Stage 0: one split of a VLSP release → a Kaldi data dir (``wav.scp``, ``text``) that
``prepare_data`` reads. Two layouts (README.md):

- audio with same-named transcripts: ``<split>/**/<name>.wav`` + ``<split>/**/<name>.txt``
  (VLSP 2020 ASR; also .flac/.mp3/.ogg). Key: the path below ``<split>`` without extension,
  ``/`` → ``-``, whitespace → ``_``. Audio without a transcript is counted and listed.
- a Kaldi data dir (``<split>/wav.scp``, ``text``, optional ``segments``, ``utt2spk``,
  ``utt2dur``): copied, with ``wav.scp`` paths made absolute.

    python local/prepare_vlsp.py /corpora/vlsp2020/train data/local/train
"""
import os
import shutil
import sys
from pathlib import Path

AUDIO = (".wav", ".flac", ".mp3", ".ogg")
KALDI_FILES = ("text", "segments", "utt2spk", "utt2dur")


def key_of(rel: Path) -> str:
    return "_".join("-".join(rel.with_suffix("").parts).split())


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
    audio = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO and p.is_file())
    if not audio:
        sys.exit(f"{src}: no audio files ({' '.join(AUDIO)}) and no wav.scp")
    wav_scp, text, missing, keys = [], [], [], set()
    for path in audio:
        key = key_of(path.relative_to(src))
        if key in keys:
            sys.exit(f"{path}: key {key} made twice (same name, other extension?)")
        keys.add(key)
        txt = path.with_suffix(".txt")
        if not txt.is_file():
            missing.append(str(path))
            continue
        transcript = " ".join(txt.read_text(encoding="utf-8-sig").split())
        wav_scp.append(f"{key} {os.path.abspath(path)}\n")
        text.append(f"{key} {transcript}\n")
    out.joinpath("wav.scp").write_text("".join(wav_scp), encoding="utf-8")
    out.joinpath("text").write_text("".join(text), encoding="utf-8")
    if missing:
        out.joinpath("no_transcript.txt").write_text("\n".join(missing) + "\n", encoding="utf-8")
        print(f"{src}: {len(missing)} audio files without a .txt transcript, left out "
              f"(listed in {out / 'no_transcript.txt'})")
    return len(wav_scp)


def main(src, out):
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kaldi = src.joinpath("wav.scp").is_file()
    n = from_kaldi(src, out) if kaldi else from_pairs(src, out)
    print(f"{src} ({'Kaldi dir' if kaldi else 'audio + .txt'}): {n} recordings → {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
