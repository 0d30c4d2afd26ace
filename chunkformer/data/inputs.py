"""What ``recognize`` decodes: one audio file, a folder, a Kaldi data dir / ``wav.scp``, or a
JSON-lines ``data.list`` (WeNet's raw format) → a list of :class:`AudioItem`.

Formats (relative audio paths resolve against the folder of the list that names them):

- audio file (``.wav .flac .ogg .mp3 .opus .m4a .sph``): one item, key = file stem.
- folder holding ``wav.scp``: a Kaldi data dir, read as below.
- any other folder: every audio file below it, sorted by relative path; key = relative path
  without extension, ``/`` → ``-``, whitespace → ``_`` so keys stay one Kaldi token
  (``spk1/call 02.wav`` → ``spk1-call_02``). Two files giving one key is an error.
- ``wav.scp`` (any file whose first line is not JSON): ``<recording> <path>`` per line; with a
  ``segments`` file beside it (``<utt> <recording> <start> <end>``, seconds) the items are the
  segments. A ``text`` file beside it (``<key> <transcript>``) fills ``AudioItem.text``.
  Piped commands (``sph2pipe ... |``) are refused: convert the audio to files first.
- ``data.list`` (first line starts with ``{``): one JSON object per line with ``key``, ``wav``
  (or ``audio``), optional ``txt`` (or ``text``), ``start``, ``end`` or ``duration`` (seconds;
  ``duration`` sets the end only together with ``start``, otherwise it is just metadata).

Malformed input raises :class:`InputError` with one line ``<file>:<line>: <problem>``.
"""
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".sph")


class InputError(Exception):
    """A malformed input list; the message names the file and line."""


@dataclass
class AudioItem:
    """One utterance to decode: seconds [start, end) of ``path`` (whole file when None)."""

    key: str
    path: str
    start: Optional[float] = None
    end: Optional[float] = None
    text: Optional[str] = None


def _lines(path: Path):
    """Yield (line number, stripped line) for the non-blank lines of a text file."""
    with open(path, encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, line.strip()
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a UTF-8 text list") from None


def _add(table: dict, key: str, value, where: str, first_seen: dict) -> None:
    """Insert into ``table``, refusing a key seen before (``first_seen`` maps key → where)."""
    if key in table:
        raise InputError(f"{where}: duplicate key '{key}' (first at {first_seen[key]})")
    table[key], first_seen[key] = value, where


def _resolve(audio: str, folder: Path) -> str:
    return audio if os.path.isabs(audio) else os.path.join(folder, audio)


def read_text(path) -> dict:
    """Read a Kaldi ``text`` file → {key: transcript} (the rest of the line, may be empty)."""
    path, table, seen = Path(path), {}, {}
    for n, line in _lines(path):
        key, transcript = (line.split(maxsplit=1) + [""])[:2]
        _add(table, key, transcript, f"{path}:{n}", seen)
    return table


def read_wav_scp(path) -> dict:
    """Read ``wav.scp`` → {recording: audio path}, paths resolved against its folder."""
    path, table, seen = Path(path), {}, {}
    for n, line in _lines(path):
        where = f"{path}:{n}"
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise InputError(f"{where}: expected '<key> <path>'")
        key, audio = fields
        if audio.endswith("|"):
            raise InputError(
                f"{where}: piped command '{audio}' is not supported; "
                "convert the audio to files and list those"
            )
        _add(table, key, _resolve(audio, path.parent), where, seen)
    return table


def _seconds(value: str, name: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{where}: {name} '{value}' is not a number") from None


def read_segments(path, recordings: dict) -> list:
    """Read Kaldi ``segments`` against {recording: path} → AudioItems (no text yet)."""
    path, items, seen = Path(path), {}, {}
    for n, line in _lines(path):
        where = f"{path}:{n}"
        fields = line.split()
        if len(fields) != 4:
            raise InputError(f"{where}: expected '<utt> <recording> <start> <end>'")
        utt, rec = fields[:2]
        start, end = (_seconds(v, k, where) for v, k in zip(fields[2:], ("start", "end")))
        if rec not in recordings:
            raise InputError(f"{where}: recording '{rec}' is not in wav.scp")
        if start < 0:
            raise InputError(f"{where}: start {start} < 0")
        if end <= start:
            raise InputError(f"{where}: end {end} ≤ start {start}")
        _add(items, utt, AudioItem(utt, recordings[rec], start, end), where, seen)
    return list(items.values())


def read_kaldi(wav_scp) -> list:
    """Read ``wav.scp`` plus the ``segments`` and ``text`` files beside it, when present."""
    wav_scp = Path(wav_scp)
    recordings = read_wav_scp(wav_scp)
    segments, text = wav_scp.parent / "segments", wav_scp.parent / "text"
    if segments.is_file():
        items = read_segments(segments, recordings)
    else:
        items = [AudioItem(key, audio) for key, audio in recordings.items()]
    if text.is_file():
        transcripts = read_text(text)
        for item in items:
            item.text = transcripts.get(item.key)
    return items


def _json_item(row, folder: Path, where: str) -> AudioItem:
    """One ``data.list`` object → AudioItem, checking its fields."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object")
    key, audio = row.get("key"), row.get("wav", row.get("audio"))
    for name, value in (("key", key), ("wav", audio)):
        if not isinstance(value, str) or not value:
            raise InputError(f"{where}: missing field '{name}'")
    text = row.get("txt", row.get("text"))
    if text is not None and not isinstance(text, str):
        raise InputError(f"{where}: field 'txt' must be a string")
    start, end, duration = (row.get(name) for name in ("start", "end", "duration"))
    for name, value in (("start", start), ("end", end), ("duration", duration)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{where}: field '{name}' must be a number of seconds")
    if end is None and start is not None and duration is not None:
        end = start + duration
    if (start or 0) < 0 or (end is not None and end <= (start or 0)):
        raise InputError(f"{where}: bad segment start={start} end={end}")
    return AudioItem(key, _resolve(audio, folder), start, end, text)


def read_data_list(path) -> list:
    """Read a JSON-lines ``data.list`` → AudioItems."""
    path, items, seen = Path(path), {}, {}
    for n, line in _lines(path):
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
        item = _json_item(row, path.parent, where)
        _add(items, item.key, item, where, seen)
    return list(items.values())


def _key(relative: Path) -> str:
    """Relative audio path → one-token key: extension dropped, '/' → '-', whitespace → '_'."""
    return re.sub(r"\s+", "_", "-".join(relative.with_suffix("").parts))


def scan_folder(folder) -> list:
    """Every audio file below ``folder`` (sorted) → AudioItems keyed by relative path."""
    folder, items, seen = Path(folder), {}, {}
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    if not files:
        raise InputError(f"{folder}: no audio files ({' '.join(AUDIO_EXTENSIONS)}) found")
    for p in files:
        rel = p.relative_to(folder)
        _add(items, _key(rel), AudioItem(_key(rel), str(p)), str(rel), seen)
    return list(items.values())


def _first_line(path: Path) -> str:
    return next((line for _, line in _lines(path)), "")


def read_inputs(path) -> list:
    """Any supported input (see module docstring) → list of AudioItem, in input order."""
    path = Path(path)
    if path.is_dir():
        return read_kaldi(path / "wav.scp") if (path / "wav.scp").is_file() else scan_folder(path)
    if not path.is_file():
        raise InputError(f"{path}: not found")
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        return [AudioItem(_key(Path(path.name)), str(path))]
    if _first_line(path).startswith("{"):
        return read_data_list(path)
    return read_kaldi(path)
