"""Tar shards: thousands of utterances per file, so a corpus of millions of clips is read as a
few large sequential files, streamed and split across ranks and DataLoader workers.

Layout of ``shard_000000.tar`` (plain POSIX tar, members in this order for every utterance):

- ``<key>.json``: ``{"key", "audio": <member name>, "text", "duration", "speaker", "group",
  "labels", "source": {"audio", "start", "end"}}`` (``duration``: seconds of the packed audio,
  from its header; ``source``: where the audio came from);
- ``<key>.<ext>``: the audio bytes: the original file as it is when the utterance is a whole
  file (``.wav``, ``.flac``, ``.mp3``, ...), else the segment cut out at the file's own rate and
  written as WAV with the file's sample type (float when WAV cannot hold it), so decoding the
  member gives the samples ``load_audio(audio, start=start, end=end)`` reads.

``shards.list`` names one shard per line, relative to the list's folder (or absolute).
Members carry mtime 0, so packing the same rows twice gives identical bytes.
"""
import io
import json
import os
import random
import tarfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import soundfile as sf
import torch
from tqdm import tqdm

from chunkformer.data.audio import AudioError, audio_duration, check_channel, load_audio
from chunkformer.data.manifest import ManifestError, Utterance

SHARD_LIST = "shards.list"


def shard_name(index: int) -> str:
    return f"shard_{index:06d}.tar"


def _segment_bytes(row: Utterance) -> Tuple[bytes, float]:
    """Samples [start, end) of the file (the row's channel only, when it names one) at its own
    rate and sample type → (WAV bytes, seconds)."""
    info = sf.info(row.audio)
    s = round((row.start or 0.0) * info.samplerate)
    e = info.frames if row.end is None else min(info.frames, round(row.end * info.samplerate))
    if s >= e:
        raise AudioError(f"{row.audio}: segment [{row.start}, {row.end}) s is outside the audio "
                         f"({info.frames / info.samplerate:.2f} s)")
    # float64 holds every integer sample type exactly, so the WAV gets the very same samples.
    samples, rate = sf.read(row.audio, start=s, stop=e, dtype="float64", always_2d=True)
    if row.channel is not None:  # the member holds the row's channel only
        check_channel(row.audio, samples.shape[1], row.channel)
        samples = samples[:, row.channel:row.channel + 1]
    subtype = info.subtype if sf.check_format("WAV", info.subtype) else "FLOAT"
    out = io.BytesIO()
    sf.write(out, samples, rate, format="WAV", subtype=subtype)
    return out.getvalue(), (e - s) / rate


def audio_member(row: Utterance) -> Tuple[str, bytes, float]:
    """(member name, bytes, seconds) of a row's audio; AudioError when it cannot be read."""
    seconds = audio_duration(row.audio)  # AudioError for missing or unreadable files
    if row.start is None and row.end is None and row.channel is None:  # the file as it is
        suffix = Path(row.audio).suffix.lower() or ".wav"
        return row.key + suffix, Path(row.audio).read_bytes(), seconds
    try:
        return (row.key + ".wav", *_segment_bytes(row))
    except RuntimeError as e:  # soundfile's errors
        raise AudioError(f"{row.audio}: unreadable segment: {e}") from e


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shard(path, rows: List[Utterance]) -> List[Tuple[Utterance, str]]:
    """Pack rows into one tar (written to a temporary name, then renamed).

    Returns:
        (row, reason) for each row left out because its audio could not be read.
    """
    path, skipped = Path(path), []
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for row in rows:
            try:
                name, data, seconds = audio_member(row)
            except AudioError as e:
                skipped.append((row, str(e)))
                continue
            meta = {"key": row.key, "audio": name, "text": row.text, "duration": seconds,
                    "speaker": row.speaker, "group": row.group, "labels": row.labels,
                    "source": {"audio": row.audio, "start": row.start, "end": row.end}}
            _add(tar, row.key + ".json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
            _add(tar, name, data)
    os.replace(tmp, path)
    return skipped


def write_shards(rows: List[Utterance], out_dir, shard_size: int, pool=None,
                 progress: bool = True) -> Tuple[List[Path], List[Tuple[Utterance, str]]]:
    """Pack rows, in order, into ``out_dir/shard_%06d.tar`` of ``shard_size`` rows each and
    write ``out_dir/shards.list``.

    Args:
        pool: an executor whose ``map`` packs shards in parallel (None: one at a time).
    Returns:
        (shard paths, (row, reason) for every row left out).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size {shard_size} < 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir / shard_name(i), rows[s:s + shard_size])
            for i, s in enumerate(range(0, len(rows), shard_size))]
    results = (pool.map if pool else map)(write_shard, *zip(*jobs)) if jobs else []
    skipped = [item for result in tqdm(results, total=len(jobs), unit="shard", desc="shards",
                                       disable=not progress) for item in result]
    paths = [path for path, _ in jobs]
    (out_dir / SHARD_LIST).write_text("".join(f"{p.name}\n" for p in paths), encoding="utf-8")
    return paths, skipped


def read_shard_list(path) -> List[str]:
    """``shards.list`` → shard paths (relative ones resolved against the list's folder)."""
    path, shards = Path(path), []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if not name.endswith(".tar"):
            raise ManifestError(f"{path}:{n}: {name!r} is not a .tar shard")
        shards.append(name if os.path.isabs(name) else str(path.parent / name))
    return shards


def iterate_shard(path) -> Iterator[Tuple[Utterance, bytes]]:
    """Stream one shard → (row, audio bytes) per utterance, in packing order.

    The row's ``audio`` is ``<shard>:<member>`` (for messages), its ``start``/``end`` unset
    (the bytes are the utterance); decode the bytes with :func:`decode_audio`.

    Raises:
        ManifestError: ``<shard>: <problem>`` for a corrupt tar or misplaced members.
    """
    meta: Optional[dict] = None
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                data = tar.extractfile(member).read() if member.isfile() else b""
                if meta is None:
                    meta = _metadata(path, member.name, data)
                    continue
                if member.name != meta["audio"]:
                    raise ManifestError(f"{path}: member '{member.name}' follows '{meta['key']}"
                                        f".json', which names '{meta['audio']}'")
                yield Utterance(meta["key"], f"{path}:{member.name}", meta["text"],
                                duration=meta["duration"], speaker=meta["speaker"],
                                group=meta["group"], labels=meta["labels"]), data
                meta = None
    except (tarfile.TarError, OSError) as e:
        raise ManifestError(f"{path}: corrupt or truncated tar: {e}") from e
    if meta is not None:
        raise ManifestError(f"{path}: ends after '{meta['key']}.json' without its audio")


def _metadata(path, name: str, data: bytes) -> dict:
    if not name.endswith(".json"):
        raise ManifestError(f"{path}: member '{name}' where a .json metadata member belongs")
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: member '{name}': invalid JSON: {e}") from None
    missing = {"key", "audio", "text", "duration", "speaker", "group", "labels"} - set(meta)
    if missing:
        raise ManifestError(f"{path}: member '{name}': missing {sorted(missing)}")
    return meta


def decode_audio(data: bytes, what: str = "audio") -> torch.Tensor:
    """Audio bytes of a shard member → 16 kHz int16-scale samples, as ``load_audio`` gives.

    Raises:
        AudioError: bytes soundfile cannot decode.
    """
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except RuntimeError as e:
        raise AudioError(f"{what}: not an audio file / unreadable: {e}") from e
    return load_audio(samples, rate)


def split_shards(shards: List[str], rank: int = 0, world_size: int = 1, worker: int = 0,
                 num_workers: int = 1, epoch: int = 0, seed: int = 0) -> List[str]:
    """The shards one DataLoader worker of one rank reads this epoch.

    Every rank shuffles the full list the same way (seeded by ``seed`` and ``epoch``), takes
    every ``world_size``-th shard from ``rank``, and its workers split those the same way: the
    subsets are disjoint, cover the list, and depend only on the arguments.

    Uneven counts: ranks differ by at most one shard (and shards by their skipped rows), so
    batch counts differ; the trainer caps every rank to the same number of batches per epoch
    (the smallest), never waiting on a rank that has run dry (DDP would hang). A worker may get
    no shard when there are fewer shards than ``world_size × num_workers``; it yields nothing.

    Raises:
        ValueError: bad rank/worker indices, or fewer shards than ranks (a rank with no data).
    """
    if not (0 <= rank < world_size and 0 <= worker < num_workers):
        raise ValueError(f"rank {rank} of {world_size}, worker {worker} of {num_workers}: "
                         "out of range")
    if len(shards) < world_size:
        raise ValueError(f"{len(shards)} shards for {world_size} ranks: pack at least one shard "
                         "per rank (a smaller shard size)")
    order = list(shards)
    random.Random(f"{seed}/{epoch}").shuffle(order)
    return order[rank::world_size][worker::num_workers]
