"""Manifest rows → training examples, with bad rows skipped and explained, never fatal.

An example is built in this order: transcript → token ids (tokenizer), audio →
:func:`~chunkformer.data.audio.load_audio` (the ``start``/``end`` segment only) → waveform
transforms → :func:`~chunkformer.data.features.compute_fbank` (Kaldi dither) → feature
transforms. With precomputed features (a Kaldi ``feats.scp`` written by
:func:`write_feats_scp`, the recipes' feature-extraction stage) the fbank is read with kaldiio
instead and only the feature transforms run.

:class:`ExampleBuilder` does that for one row; :class:`SpeechDataset` serves rows by index,
and the shards mode (:mod:`chunkformer.data.shard_stream`) feeds the builder rows read from tar
shards.
A row that cannot make a usable example gives a :class:`Skipped` (key, reason) instead; the
reason starts with one of :data:`SKIP_KINDS`: unreadable audio (missing, corrupt, empty, bad
segment), missing features (no ``feats.scp`` entry), empty transcript, unknown characters (they
are listed), too short (fewer than the 15 fbank frames the 8x subsampling needs for one output
frame) and transcript too long (more tokens than encoder frames: CTC cannot align it).

Randomness: item ``(epoch, index)`` draws every random number (augmentation, dither) from a
generator seeded by (seed, epoch, index), so a given epoch's data is the same whatever the
number of workers, the batch it lands in, or where a resumed run starts.
"""
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import kaldiio
import numpy as np
import torch

from chunkformer.data.audio import AudioError, load_row
from chunkformer.data.features import SAMPLE_RATE, SHIFT, compute_fbank
from chunkformer.data.long_form import (Composition, LongFormConfig, join_features, kept_gaps,
                                         members_of)
from chunkformer.encoder.subsampling import subsampled_length

SKIP_KINDS = ("unreadable audio", "missing features", "empty transcript", "unknown characters",
              "too short", "transcript too long", "unknown label")


class Skipped(NamedTuple):
    """A row left out: its key, a one-line reason ``<kind>: <detail>`` (kind in
    :data:`SKIP_KINDS`; it never repeats the audio path, so reports can hide that) and its
    audio path."""

    key: str
    reason: str
    audio: str = ""

    @classmethod
    def of(cls, row, reason: str) -> "Skipped":
        """The Skipped of manifest ``row``; an ``<audio>: `` prefix of ``reason`` is dropped."""
        audio = str(row.audio)
        return cls(row.key, reason.replace(f"{audio}: ", "", 1), audio)

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0]


class _Skip(Exception):
    """Raised inside :class:`ExampleBuilder` to turn a row into a :class:`Skipped`."""


def row_label(row, name: str):
    """A row's value of label field ``name``: a list column, or the row's speaker / group."""
    if name in ("speaker", "group"):
        return getattr(row, name)
    return row.labels.get(name)


def example_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item ``index`` in ``epoch``: a well-mixed function of the three."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def read_feats_scp(path) -> Dict[str, str]:
    """Kaldi ``feats.scp`` (``<key> <ark>:<offset>`` lines) → {key: rxspecifier}."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{n}: expected '<key> <ark>:<offset>', got "
                                 f"{line.rstrip()!r}")
            if fields[0] in table:
                raise ValueError(f"{path}:{n}: duplicate key {fields[0]!r}")
            table[fields[0]] = fields[1].strip()
    return table


def write_feats_scp(rows: Sequence, out_prefix, num_mel_bins: int = 80) -> Tuple[Path,
                                                                                 List[Skipped]]:
    """Write the fbank (no dither) of every row to ``<out_prefix>.ark`` and ``.scp``.

    Returns (scp path, rows whose audio could not be read); those rows get no entry, and the
    dataset later skips them as "missing features".
    """
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    ark, scp = out_prefix.with_suffix(".ark"), out_prefix.with_suffix(".scp")
    skipped = []
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for row in rows:
            try:
                wave = load_row(row)
            except AudioError as e:
                skipped.append(Skipped.of(row, f"unreadable audio: {e}"))
                continue
            writer(row.key, compute_fbank(wave, num_mel_bins).numpy())
    return scp, skipped


def _seed_from(g: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=g).item())


class ExampleBuilder:
    """One row → example dict or :class:`Skipped`; shared by the map-style dataset and the
    shard stream.

    An example is ``{"key": str, "feats": (T, F) float32, "targets": (U,) int64,
    "audio_seconds": float, "rows": int}``; ``audio_seconds`` is the source audio's length
    (before speed perturbation, gaps not counted), the unit of throughput; ``rows`` the rows it
    joins (1 unless long-form).

    Args:
        tokenizer: has ``encode(text) -> (ids, unknown_chars)``; None for audio only.
        waveform_transforms: ``t(wave (N,), generator) -> wave`` callables, applied in order.
        feature_transforms: ``t(feats (T, F), generator) -> feats`` callables, in order.
        num_mel_bins: F.
        dither: Kaldi dither amplitude (1.0 for training, 0.0 for evaluation).
        feats_scp: a Kaldi ``feats.scp`` of precomputed fbank to read instead of the audio
            (waveform transforms and dither must then be off).
        label_fields: {field: {class name: id}} for classification heads: the row's value of
            each field (a list column, or ``speaker`` / ``group``) → ``example["labels"]``;
            a row without the field gets no label (-1 in the batch), a value outside the
            classes is skipped as "unknown label".
        long_form: how :meth:`compose` fills the gaps between joined rows (None: rows are
            never joined).
    """

    def __init__(self, tokenizer, waveform_transforms: Sequence = (),
                 feature_transforms: Sequence = (), num_mel_bins: int = 80,
                 dither: float = 0.0, feats_scp=None,
                 label_fields: Optional[Dict[str, Dict[str, int]]] = None,
                 long_form: Optional[LongFormConfig] = None):
        if long_form is not None and label_fields:
            raise ValueError("data.long_form joins utterances into one example, which cannot "
                             "carry one class label; turn it off for classification heads")
        self.tokenizer, self.long_form = tokenizer, long_form
        self.label_fields = dict(label_fields or {})
        self.waveform_transforms = list(waveform_transforms)
        self.feature_transforms = list(feature_transforms)
        self.num_mel_bins, self.dither = num_mel_bins, dither
        self.feats = None if feats_scp is None else read_feats_scp(feats_scp)
        if self.feats is not None and (self.waveform_transforms or dither):
            raise ValueError(f"{feats_scp}: precomputed features leave no waveform to augment "
                             "or dither; turn waveform transforms and dither off")

    def __call__(self, row, g: torch.Generator, read_wave: Optional[Callable] = None
                 ) -> Union[Dict, Skipped]:
        """Build the example of ``row`` with randomness from ``g``; ``read_wave()`` gives its
        16 kHz samples (default: ``load_audio`` of the row's file and segment)."""
        return self.compose([row], (), g, [read_wave])[0]

    def compose(self, rows: Sequence, gaps: Sequence[float], g: torch.Generator,
                read_waves: Optional[Sequence[Optional[Callable]]] = None
                ) -> List[Union[Dict, Skipped]]:
        """Rows joined into one example with ``gaps[i]`` seconds between rows i and i + 1
        (:mod:`chunkformer.data.long_form`; one row: the plain example) → ``[example]`` plus a
        :class:`Skipped` for each row left out (the others are still joined), or only the
        Skipped when nothing is left. The example's ``rows`` counts the rows it holds."""
        read_waves = read_waves or [None] * len(rows)
        parts, kept, texts, labels, seconds, skipped = [], [], [], {}, 0.0, []
        for i, (row, read_wave) in enumerate(zip(rows, read_waves)):
            try:
                targets = self._targets(row.text)
                labels = self._labels(row)
                feats, row_seconds = self._raw_features(row, g, read_wave)
                self._check_lengths(feats.size(0), targets.numel(), row_seconds)
            except _Skip as e:
                skipped.append(Skipped.of(row, str(e)))
                continue
            except AudioError as e:
                skipped.append(Skipped.of(row, f"unreadable audio: {e}"))
                continue
            parts.append(feats)
            kept.append(i)
            texts.append(row.text)
            seconds += row_seconds
        if not parts:
            return skipped
        if len(parts) > 1:
            feats = join_features(parts, kept_gaps(gaps, kept), self.long_form, g)
            targets = self._targets(" ".join(texts))
        for transform in self.feature_transforms:
            feats = transform(feats, g)
        key = "+".join(rows[i].key for i in kept)
        example = {"key": key, "feats": feats.float(), "targets": targets,
                   "audio_seconds": seconds, "rows": len(parts)}
        if self.label_fields:
            example["labels"] = labels
        return [example] + skipped

    @staticmethod
    def _check_lengths(frames: int, tokens: int, seconds: float):
        """Raise _Skip when the features cannot carry the transcript through CTC."""
        encoder_frames = int(subsampled_length(frames))
        if encoder_frames < 1:
            raise _Skip(f"too short: {frames} fbank frames ({seconds:.3f} s); the 8x "
                        "subsampling needs at least 15")
        if tokens > encoder_frames:
            raise _Skip(f"transcript too long: {tokens} tokens for {encoder_frames} encoder "
                        f"frames ({seconds:.2f} s)")

    def _labels(self, row) -> Dict[str, int]:
        """The row's class ids of the label fields (fields it lacks are left out)."""
        labels = {}
        for name, classes in self.label_fields.items():
            value = row_label(row, name)
            if value is None:
                continue
            if str(value) not in classes:
                raise _Skip(f"unknown label: {name} {value!r} is not one of the "
                            f"{len(classes)} classes")
            labels[name] = classes[str(value)]
        return labels

    def _targets(self, text: Optional[str]) -> torch.Tensor:
        """Transcript → (U,) int64 token ids; raises _Skip for empty or unencodable text.
        Without a tokenizer (audio-only pretraining) transcripts are not read: (0,) ids."""
        if self.tokenizer is None:
            return torch.zeros(0, dtype=torch.long)
        if text is None or not text.strip():
            raise _Skip("empty transcript")
        ids, unknown = self.tokenizer.encode(text)
        if unknown:
            listed = " ".join(repr(c) for c in sorted(set(unknown)))
            raise _Skip(f"unknown characters: {listed} in {text!r}")
        if not ids:
            raise _Skip(f"empty transcript: no tokens left from {text!r}")
        return torch.as_tensor(ids, dtype=torch.long)

    def _raw_features(self, row, g: torch.Generator, read_wave) -> Tuple[torch.Tensor, float]:
        """Row → ((T, F) fbank after the waveform transforms and dither, before the feature
        transforms; seconds of source audio)."""
        dither_seed = _seed_from(g)  # drawn either way: precomputed fbank joins like audio
        if self.feats is not None:
            if row.key not in self.feats:
                raise _Skip("missing features: no entry in feats.scp")
            feats = torch.from_numpy(np.array(kaldiio.load_mat(self.feats[row.key])))
            return feats, feats.size(0) * SHIFT / SAMPLE_RATE
        wave = read_wave() if read_wave is not None else load_row(row)  # (N,)
        seconds = wave.numel() / SAMPLE_RATE
        for transform in self.waveform_transforms:
            wave = transform(wave, g)
        # kaldi.fbank dithers with the global RNG: seed a private copy of it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(dither_seed)
            return compute_fbank(wave, self.num_mel_bins, dither=self.dither), seconds


class SpeechDataset(torch.utils.data.Dataset):
    """Map-style dataset over manifest rows: item ``(epoch, unit)`` → the example (or
    :class:`Skipped`) of ``rows[unit]`` when ``unit`` is an index, the list of items of
    :meth:`ExampleBuilder.compose` when it is a :class:`~chunkformer.data.long_form.Composition`
    (rows joined); randomness from the generator of (seed, epoch, first row index).

    Args:
        rows: :class:`~chunkformer.data.manifest.Utterance` rows (``key``, ``audio``,
            ``text``, ``start``, ``end``).
        build: the :class:`ExampleBuilder`.
        seed: with (epoch, index), seeds each item's generator.
    """

    def __init__(self, rows: Sequence, build: ExampleBuilder, seed: int = 0):
        self.rows, self.build, self.seed = list(rows), build, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: Tuple[int, Union[int, Composition]]
                    ) -> Union[Dict, Skipped, List]:
        epoch, unit = item
        members, gaps = members_of(unit)
        g = example_generator(self.seed, epoch, members[0])
        if isinstance(unit, Composition):
            return self.build.compose([self.rows[i] for i in members], gaps, g)
        return self.build(self.rows[unit], g)
