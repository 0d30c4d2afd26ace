"""Manifests: the one reader of utterance lists, for training and decoding → :class:`Utterance`.

``read_manifest(path, audio_root)`` takes any of these (relative audio paths resolve against
``audio_root`` when given, else against the folder of the list that names them; rows hold
absolute paths, so a list written from them works from anywhere):

- audio file (``.wav .flac .ogg .mp3 .opus .m4a .sph``): one row, key = file stem.
- folder holding ``wav.scp``: a Kaldi data dir, read as below.
- any other folder: every audio file below it, sorted by relative path; key = relative path
  without extension, ``/`` → ``-``, whitespace → ``_`` (``spk1/call 02.wav`` → ``spk1-call_02``).
  A same-named UTF-8 ``.txt`` beside an audio file (``call 02.txt``, the VLSP layout) is its
  transcript, its lines joined with spaces.
- JSON lines (first line starts with ``{``; WeNet's ``data.list``, NeMo manifests) and JSON
  arrays (first character ``[``; ``[{"utt_id", "audio_path", "text", ...}]``): one object per
  utterance, its fields named as in :data:`FIELDS`; any other field goes to ``labels``.
- TSV / CSV with a header line (``.tsv`` / ``.csv``, or a first line naming an audio column):
  columns named as in :data:`FIELDS` (case-insensitive), e.g. Common Voice's ``train.tsv``
  (``client_id`` → speaker, ``path``, ``sentence``; pass the ``clips`` folder as ``audio_root``).
  Without a key column the key is made from the audio path as for folders. Empty cells are unset.
- ``wav.scp`` (any other text file): ``<recording> <path>`` per line, with the Kaldi files beside
  it when present: ``segments`` (``<utt> <recording> <start> <end>``, seconds), ``text``
  (``<utt> <transcript>``), ``utt2dur`` (``<utt> <seconds>``), ``utt2spk`` (``<utt> <speaker>``).
  Piped commands (``sph2pipe ... |``) are refused: convert the audio to files first.

Every row is checked as ``utterance.make_utterance`` describes, and keys are unique in a list;
malformed input raises :class:`ManifestError` with one line ``<file>:<line>: <problem>``.
``group`` defaults to the recording (Kaldi recording id, else the audio path), so segments of
one call stay together. :func:`write_manifest` writes rows back as JSON lines.
"""
import csv
import json
import os
import re
from pathlib import Path
from typing import Iterator, List

from chunkformer.data.utterance import (
    FIELDS, KEY_MODES, ManifestError, Utterance, check_segment, display_key, key_from_path,
    make_utterance, parse_seconds, take_field, utterance_to_json)

__all__ = ["AUDIO_EXTENSIONS", "KEY_MODES", "ManifestError", "Utterance", "display_key",
           "read_manifest", "read_text", "write_manifest"]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".sph")
_SQUASHED_FIELDS = {name.replace("_", ""): name for names in FIELDS.values() for name in names}


# --- line-oriented readers ---------------------------------------------------------------------


def _read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a UTF-8 text list") from None


def _lines(path: Path) -> Iterator[tuple]:
    """(line number, stripped line) for the non-blank lines of a text file."""
    for n, line in enumerate(_read_text_file(path).splitlines(), 1):
        if line.strip():
            yield n, line.strip()


def _unique(rows: Iterator[tuple]) -> List[Utterance]:
    """(where, Utterance) pairs → list, refusing a key seen before."""
    table, first = {}, {}
    for where, row in rows:
        if row.key in table:
            raise ManifestError(f"{where}: duplicate key '{row.key}' (first at {first[row.key]})")
        table[row.key], first[row.key] = row, where
    return list(table.values())


def read_jsonl(path, root: Path) -> List[Utterance]:
    """JSON lines, one object per utterance (WeNet ``data.list``)."""
    path = Path(path)

    def rows():
        for n, line in _lines(path):
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ManifestError(f"{where}: expected a JSON object")
            yield where, make_utterance(obj, where, root)

    return _unique(rows())


def read_json_array(path, root: Path) -> List[Utterance]:
    """A JSON array of objects; errors name the line where the object starts."""
    path = Path(path)
    text = _read_text_file(path)
    try:
        objects = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(
            f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    decoder, skip = json.JSONDecoder(), re.compile(r"[\s,]*")

    def rows():
        # Walk the (valid) text again only to learn the line each object starts on.
        i, line = text.index("[") + 1, 1
        for obj in objects:
            j = skip.match(text, i).end()
            line += text.count("\n", i, j)
            where = f"{path}:{line}"
            if not isinstance(obj, dict):
                raise ManifestError(f"{where}: expected a JSON object")
            _, i = decoder.raw_decode(text, j)
            line += text.count("\n", j, i)
            yield where, make_utterance(obj, where, root)

    return _unique(rows())


def _column_names(cells: List[str]) -> List[str]:
    """Table header cells → field names: lower case, spaces → '_', and a cell that matches a
    name of :data:`FIELDS` up to '_' and spaces takes that name (``File Name`` → ``filename``)."""
    names = [re.sub(r"\s+", "_", c.strip().lower()) for c in cells]
    return [_SQUASHED_FIELDS.get(name.replace("_", ""), name) for name in names]


def read_table(path, root: Path) -> List[Utterance]:
    """TSV / CSV with a header line. TSV cells are taken literally (no quoting, as Common Voice
    writes them); CSV cells follow the usual double-quote rules (spreadsheet exports)."""
    path = Path(path)
    text = _read_text_file(path)
    first = text.lstrip("\r\n").split("\n", 1)[0]
    tsv = path.suffix.lower() == ".tsv" or "\t" in first
    reader = csv.reader(text.splitlines(), delimiter="\t" if tsv else ",",
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    rows = [(reader.line_num, row) for row in reader]
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ManifestError(f"{path}: empty table")
    (header_line, header), rows = rows[0], rows[1:]
    columns = _column_names(header)
    twice = next((c for c in columns if columns.count(c) > 1), None)
    if twice:
        raise ManifestError(f"{path}:{header_line}: column '{twice}' appears twice")
    probe = {c: "" for c in columns}
    for name in FIELDS:
        take_field(probe, name, f"{path}:{header_line}")
    if not any(c in FIELDS["audio"] for c in columns):
        raise ManifestError(f"{path}:{header_line}: no audio column (one of "
                            f"{', '.join(FIELDS['audio'])}) in the header")
    derive_key = not any(c in FIELDS["key"] for c in columns)

    def utterances():
        for n, row in rows:
            where = f"{path}:{n}"
            if len(row) != len(columns):
                raise ManifestError(f"{where}: {len(row)} cells, the header has {len(columns)}")
            cells = {c: v.strip() for c, v in zip(columns, row) if v.strip()}
            yield where, make_utterance(cells, where, root, derive_key)

    return _unique(utterances())


# --- Kaldi data dirs ---------------------------------------------------------------------------


def _kaldi_table(path: Path, usage: str, rest_required: bool = True) -> dict:
    """``<key> <rest>`` lines → {key: (rest, where)}; duplicate keys refused."""
    table = {}
    for n, line in _lines(path):
        where = f"{path}:{n}"
        key, rest = (line.split(maxsplit=1) + [""])[:2]
        if rest_required and not rest:
            raise ManifestError(f"{where}: expected '{usage}'")
        if key in table:
            raise ManifestError(f"{where}: duplicate key '{key}' (first at {table[key][1]})")
        table[key] = (rest, where)
    return table


def read_text(path) -> dict:
    """Read a Kaldi ``text`` file → {key: transcript} (the rest of the line, may be empty)."""
    return {k: v for k, (v, _) in _kaldi_table(Path(path), "<key> <transcript>", False).items()}


def _kaldi_segments(path: Path, recordings: dict) -> Iterator[tuple]:
    """(where, Utterance) per ``segments`` line, against {recording: its whole-file row}."""
    for utt, (rest, where) in _kaldi_table(path, "<utt> <recording> <start> <end>").items():
        fields = rest.split()
        if len(fields) != 3:
            raise ManifestError(f"{where}: expected '<utt> <recording> <start> <end>'")
        rec, start, end = fields
        if rec not in recordings:
            raise ManifestError(f"{where}: recording '{rec}' is not in wav.scp")
        yield where, make_utterance({"key": utt, "wav": recordings[rec].audio, "start": start,
                                     "end": end, "group": rec}, where, None)


def _apply_side_file(rows: dict, path: Path, usage: str, apply, rest_required=True) -> None:
    """Fill rows from a Kaldi ``<utt> <value>`` file with ``apply(row, value, where)``."""
    if not path.is_file():
        return
    for key, (value, where) in _kaldi_table(path, usage, rest_required).items():
        if key not in rows:
            raise ManifestError(f"{where}: utterance '{key}' is not in wav.scp / segments")
        apply(rows[key], value, where)


def _set_duration(row: Utterance, value: str, where: str) -> None:
    duration = parse_seconds(value, "duration", where)
    row.start, row.end, row.duration = check_segment(row.start, row.end, duration, where)


def _set_speaker(row: Utterance, value: str, where: str) -> None:
    if len(value.split()) != 1:
        raise ManifestError(f"{where}: expected '<utt> <speaker>'")
    row.speaker = value


def read_kaldi(wav_scp, audio_root=None) -> List[Utterance]:
    """``wav.scp`` plus the ``segments``, ``text``, ``utt2dur`` and ``utt2spk`` beside it."""
    wav_scp = Path(wav_scp)
    folder = wav_scp.parent
    root = Path(audio_root) if audio_root else folder
    recordings = {rec: make_utterance({"key": rec, "wav": audio, "group": rec}, where, root)
                  for rec, (audio, where) in _kaldi_table(wav_scp, "<key> <path>").items()}
    if (folder / "segments").is_file():
        rows = _unique(_kaldi_segments(folder / "segments", recordings))
    else:
        rows = list(recordings.values())
    by_key = {row.key: row for row in rows}
    _apply_side_file(by_key, folder / "text", "<utt> <transcript>",
                     lambda row, value, _: setattr(row, "text", value), rest_required=False)
    _apply_side_file(by_key, folder / "utt2dur", "<utt> <seconds>", _set_duration)
    _apply_side_file(by_key, folder / "utt2spk", "<utt> <speaker>", _set_speaker)
    return rows


# --- audio files and dispatch ------------------------------------------------------------------


def scan_folder(folder) -> List[Utterance]:
    """Every audio file below ``folder`` (sorted) → rows keyed by relative path, with the text
    of a same-named ``.txt`` beside it when there is one."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise ManifestError(f"{folder}: no audio files ({' '.join(AUDIO_EXTENSIONS)}) found")
    return _unique((str(p.relative_to(folder)), Utterance(
        key_from_path(p.relative_to(folder)), os.path.abspath(p), _transcript_beside(p),
        group=os.path.abspath(p))) for p in files)


def _transcript_beside(audio: Path):
    """The text of ``<audio stem>.txt`` (lines joined by spaces), or None without one."""
    txt = audio.with_suffix(".txt")
    if not txt.is_file():
        return None
    try:
        return " ".join(txt.read_text(encoding="utf-8-sig").split())
    except UnicodeDecodeError as e:
        raise ManifestError(f"{txt}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _is_table(path: Path, first_line: str) -> bool:
    if path.suffix.lower() in (".tsv", ".csv"):
        return True
    return ("\t" in first_line or "," in first_line) and any(
        c in FIELDS["audio"] for c in _column_names(re.split("[\t,]", first_line)))


def read_manifest(path, audio_root=None) -> List[Utterance]:
    """Any supported list (see the module docstring) → checked rows, in list order.

    Args:
        path: audio file, folder, Kaldi data dir or ``wav.scp``, JSON lines, JSON array, TSV/CSV.
        audio_root: folder that relative audio paths are relative to (default: the list's folder).
    Raises:
        ManifestError: one line, ``<file>:<line>: <problem>``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "wav.scp").is_file():
            return read_kaldi(path / "wav.scp", audio_root)
        return scan_folder(path)
    if not path.is_file():
        raise ManifestError(f"{path}: not found")
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        audio = os.path.abspath(path)
        return [Utterance(key_from_path(Path(path.name)), audio, group=audio)]
    root = Path(audio_root) if audio_root else path.parent
    first = next((line for _, line in _lines(path)), "")
    if first.startswith("{"):
        return read_jsonl(path, root)
    if first.startswith("["):
        return read_json_array(path, root)
    if _is_table(path, first):
        return read_table(path, root)
    return read_kaldi(path, audio_root)


def write_manifest(path, rows) -> None:
    """Write rows as JSON lines (``key``, ``wav``, ``txt``, ``start``, ``end``, ``duration``,
    ``speaker``, ``group``, ``channel``, then labels); :func:`read_manifest` reads them back unchanged (the
    rows it makes hold absolute audio paths). Written to a temporary file, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(utterance_to_json(row), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
