"""One utterance of a manifest: the :class:`Utterance` row, its checks, and its JSON form.

:func:`make_utterance` turns the fields of one list row (JSON object, table row, Kaldi line),
named as in :data:`FIELDS`, into a checked row: a key (no whitespace), an audio path, numbers of
seconds for ``start``/``end``/``duration`` with ``0 ≤ start < end`` and ``duration = end -
start`` (±10 ms) when all are given, ``start`` + ``duration`` setting ``end``. Problems raise
:class:`ManifestError` naming the place (``<file>:<line>``). Readers live in ``manifest.py``.
"""
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Utterance attribute → the field / column names that fill it; the first is the name written.
FIELDS = {
    "key": ("key", "utt_id", "utt"),
    "audio": ("wav", "audio", "audio_path", "audio_filepath", "path", "file", "filename"),
    "text": ("txt", "text", "transcript", "transcription", "sentence"),
    "start": ("start", "offset"),
    "end": ("end",),
    "duration": ("duration", "dur"),
    "speaker": ("speaker", "spk", "speaker_id", "client_id"),
    "group": ("group", "call_id"),
    "channel": ("channel",),
}
CHANNEL_NAMES = {"left": 0, "right": 1}  # a stereo call: agent on one side, customer on the other
RESERVED = frozenset(name for names in FIELDS.values() for name in names)
DURATION_TOLERANCE = 0.01  # seconds: one fbank hop
KEY_MODES = ("plain", "hash", "omit")


class ManifestError(Exception):
    """A malformed list; the message is one line naming the file and line."""


@dataclass
class Utterance:
    """One row of a manifest: seconds [start, end) of ``audio`` (the whole file when unset).

    Attributes:
        key: utterance id, unique in its list, no whitespace.
        audio: path of the audio file.
        text: transcript as written (normalise with ``data.text.normalize_text`` later).
        start, end: segment bounds in seconds within the file.
        duration: seconds of the utterance (``end - start`` when segmented).
        speaker: speaker / agent id.
        group: call / recording id; rows of one group never straddle a train/dev split.
        labels: any other fields (intent, emotion, ...), JSON values.
        channel: the one channel of a multi-channel file this row reads (0-based; ``left`` /
            ``right`` in a list mean 0 / 1); None: the channels' mean.
    """

    key: str
    audio: str
    text: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    duration: Optional[float] = None
    speaker: Optional[str] = None
    group: Optional[str] = None
    labels: dict = field(default_factory=dict)
    channel: Optional[int] = None

    @property
    def path(self) -> str:
        """The audio path under the name the decoding code (``bin/recognize``) reads."""
        return self.audio


def display_key(key: str, mode: str = "plain") -> str:
    """How a key appears in logs and reports: ``plain``; ``hash`` (16 hex digits of its SHA-256,
    stable across runs, so a row can still be found; pseudonymous only: a phone number is
    guessable from it by trying them all); ``omit`` (``<omitted>``)."""
    if mode == "plain":
        return key
    if mode == "hash":
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    if mode == "omit":
        return "<omitted>"
    raise ValueError(f"key display mode {mode!r} is not one of {KEY_MODES}")


def take_field(fields: dict, name: str, where: str):
    """Pop the value of attribute ``name`` under whichever of its names ``fields`` uses."""
    present = [alias for alias in FIELDS[name] if alias in fields]
    if len(present) > 1:
        raise ManifestError(f"{where}: fields '{present[0]}' and '{present[1]}' both give the "
                            f"{name}; keep one")
    return fields.pop(present[0]) if present else None


def parse_seconds(value, name: str, where: str) -> Optional[float]:
    """A number of seconds (number, or a string of one, as tables and Kaldi files hold)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ManifestError(f"{where}: {name} {value!r} is not a number of seconds") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: {name} {value!r} is not a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ManifestError(f"{where}: {name} {value} is not a finite number ≥ 0")
    return float(value)


def _name(value, name: str, where: str) -> Optional[str]:
    """A string field; integers (numeric ids) become strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ManifestError(f"{where}: {name} {value!r} must be a string")


def parse_channel(value, where: str) -> Optional[int]:
    """A channel: an integer ≥ 0 (or a string of one), ``left`` (0) or ``right`` (1)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        name = value.strip().lower()
        if name in CHANNEL_NAMES:
            return CHANNEL_NAMES[name]
        if name.isdigit():
            return int(name)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ManifestError(f"{where}: channel {value!r} is not 0, 1, … or left / right")


def check_segment(start, end, duration, where: str):
    """Check and complete (start, end, duration)."""
    if end is not None:
        start = start or 0.0
        if end <= start:
            raise ManifestError(f"{where}: end {end} ≤ start {start}")
        if duration is not None and abs(duration - (end - start)) > DURATION_TOLERANCE:
            raise ManifestError(f"{where}: duration {duration} disagrees with end - start = "
                                f"{end - start:.3f}")
        duration = end - start
    elif start is not None and duration is not None:
        end = start + duration
    if duration is not None and duration <= 0:
        raise ManifestError(f"{where}: duration {duration} ≤ 0")
    return start, end, duration


def _resolve(audio: str, root: Optional[Path]) -> str:
    """Relative ``audio`` → absolute path under ``root``, so a list written from the rows
    still finds the audio from wherever it is saved."""
    if root is None or os.path.isabs(audio):
        return audio
    return os.path.abspath(os.path.join(root, audio))


def key_from_path(relative: Path) -> str:
    """Audio path → one-token key: extension dropped, '/' → '-', whitespace → '_'."""
    parts = relative.with_suffix("").parts
    return re.sub(r"\s+", "_", "-".join(parts[-1:] if relative.is_absolute() else parts))


def make_utterance(fields: dict, where: str, root: Optional[Path],
                   derive_key: bool = False) -> Utterance:
    """One row's fields (named as in :data:`FIELDS`) → a checked Utterance; other fields become
    its labels. Relative audio paths resolve against ``root`` (None: kept as they are);
    ``derive_key``: a missing key is made from the audio path."""
    fields = dict(fields)
    values = {name: take_field(fields, name, where) for name in FIELDS}
    audio = values["audio"]
    if not isinstance(audio, str) or not audio:
        raise ManifestError(f"{where}: missing field '{FIELDS['audio'][0]}' (audio path)")
    if audio.rstrip().endswith("|"):
        raise ManifestError(f"{where}: piped command '{audio}' is not supported; convert the "
                            "audio to files and list those")
    key = _name(values["key"], "key", where)
    if key is None and derive_key:
        key = key_from_path(Path(audio))
    if not key:
        raise ManifestError(f"{where}: missing field 'key'")
    if any(c.isspace() for c in key):
        raise ManifestError(f"{where}: key {key!r} contains whitespace")
    text = values["text"]
    if text is not None and not isinstance(text, str):
        raise ManifestError(f"{where}: text {text!r} must be a string")
    seconds = (parse_seconds(values[n], n, where) for n in ("start", "end", "duration"))
    start, end, duration = check_segment(*seconds, where)
    audio = _resolve(audio, root)
    return Utterance(key, audio, text, start, end, duration,
                     speaker=_name(values["speaker"], "speaker", where),
                     group=_name(values["group"], "group", where) or audio,
                     channel=parse_channel(values["channel"], where), labels=fields)


def utterance_to_json(row: Utterance) -> dict:
    """The jsonl object of a row: set fields under their first name, then the labels."""
    clash = RESERVED.intersection(row.labels)
    if clash:
        raise ValueError(f"{row.key}: label names {sorted(clash)} are reserved field names")
    obj = {FIELDS[name][0]: getattr(row, name) for name in FIELDS}
    return {k: v for k, v in obj.items() if v is not None} | row.labels
