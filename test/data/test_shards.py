"""Tar shards: pack → stream round trip (metadata, exact audio samples), skipped rows, repeatable
bytes, corrupt shards, and the rank/worker split."""
import io
import itertools
import tarfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import torch

from chunkformer.data.audio import AudioError, load_audio
from chunkformer.data.manifest import ManifestError, Utterance
from chunkformer.data.shards import (
    decode_audio, iterate_shard, read_shard_list, split_shards, write_shards)


@pytest.fixture(scope="module")
def rows(tmp_path_factory, vi_speech, sox):
    """Whole files (16 kHz WAV, 8 kHz 24-bit FLAC, MP3) and segments of them."""
    folder = tmp_path_factory.mktemp("shard_audio")
    (a, text_a), (b, text_b) = vi_speech[:2]
    flac = sox(b, folder / "b8k.flac", rate=8000, bits=24)
    mp3 = folder / "c.mp3"
    samples, rate = sf.read(a, dtype="float32")
    sf.write(mp3, samples, rate, format="MP3")
    return [
        Utterance("whole", str(a), text_a, speaker="s1", group="call1", labels={"intent": "x"}),
        Utterance("seg", str(a), "chào", 0.25, 1.0, 0.75, "s1", "call1"),
        Utterance("flac", str(flac), text_b, group="call2"),
        Utterance("flacseg", str(flac), "số", 0.5, 1.25, 0.75, group="call2"),
        Utterance("tail", str(flac), None, 1.0, group="call2"),
        Utterance("mp3", str(mp3), text_a, group="call3"),
    ]


def _stream(shards):
    return [item for path in shards for item in iterate_shard(path)]


def test_round_trip(rows, tmp_path):
    bad = Utterance("missing", str(tmp_path / "gone.wav"), "x")
    shards, skipped = write_shards(rows[:3] + [bad] + rows[3:], tmp_path / "shards", 2,
                                   progress=False)
    assert [p.name for p in shards] == [f"shard_{i:06d}.tar" for i in range(4)]
    assert read_shard_list(tmp_path / "shards" / "shards.list") == [str(p) for p in shards]
    assert [(r.key, reason.split(": ", 1)[1]) for r, reason in skipped] == [
        ("missing", "file not found")]
    got = _stream(shards)
    assert [u.key for u, _ in got] == [r.key for r in rows]
    for row, (utt, data) in zip(rows, got):
        assert (utt.text, utt.speaker, utt.group, utt.labels) == (
            row.text, row.speaker, row.group, row.labels)
        assert utt.start is None and utt.end is None and utt.audio.startswith(str(tmp_path))
        expected = load_audio(row.audio, start=row.start, end=row.end)
        assert torch.equal(decode_audio(data, utt.audio), expected), row.key
        assert utt.duration == pytest.approx(
            sf.info(row.audio).duration if row.start is None and row.end is None
            else row.duration or sf.info(row.audio).duration - row.start)
    whole = dict((u.key, d) for u, d in got)
    assert whole["whole"] == open(rows[0].audio, "rb").read()  # whole files packed as they are
    assert whole["mp3"] == open(rows[-1].audio, "rb").read()
    assert sf.info(io.BytesIO(whole["flacseg"])).subtype == "PCM_24"  # sample type kept


def test_packing_is_repeatable_and_parallel_safe(rows, tmp_path):
    first, _ = write_shards(rows, tmp_path / "a", 4, progress=False)
    with ThreadPoolExecutor(2) as pool:
        second, _ = write_shards(rows, tmp_path / "b", 4, pool, progress=False)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


META = b'{"key": "k", "audio": "k.wav", "text": "t", "duration": 1, "speaker": null, ' \
       b'"group": "g", "labels": {}}'


@pytest.mark.parametrize("members, message", [
    ([("k.wav", b"RIFF")], "member 'k.wav' where a .json metadata member belongs"),
    ([("k.json", META), ("other.wav", b"RIFF")], "member 'other.wav' follows 'k.json'"),
    ([("k.json", META)], "ends after 'k.json' without its audio"),
    ([("k.json", b"{not json")], "member 'k.json': invalid JSON"),
    ([("k.json", b'{"key": "k"}')], "member 'k.json': missing ['audio', 'duration'"),
])
def test_malformed_shards(tmp_path, members, message):
    path = _tar(tmp_path / "bad.tar", members)
    with pytest.raises(ManifestError, match=f"^{path}: {message.replace('[', '.')}"):
        list(iterate_shard(path))


def test_truncated_shard(rows, tmp_path):
    (path,), _ = write_shards(rows[:2], tmp_path, 10, progress=False)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ManifestError, match="corrupt or truncated tar"):
        list(iterate_shard(path))


def test_read_shard_list_errors(tmp_path):
    (tmp_path / "shards.list").write_text("a.tar\n\n/abs/b.tar\nc.zip\n")
    with pytest.raises(ManifestError, match=r"shards.list:4: 'c.zip' is not a .tar shard"):
        read_shard_list(tmp_path / "shards.list")


def test_decode_audio_error():
    with pytest.raises(AudioError, match="k.wav: not an audio file"):
        decode_audio(b"not audio", "k.wav")


@pytest.mark.parametrize("num_shards, world_size, num_workers", [
    (10, 1, 1), (10, 2, 2), (7, 3, 2), (5, 2, 4), (4, 4, 1)])
def test_split_shards_is_a_disjoint_deterministic_cover(num_shards, world_size, num_workers):
    shards = [f"s{i}.tar" for i in range(num_shards)]
    for epoch in (0, 1):
        parts = {(r, w): split_shards(shards, r, world_size, w, num_workers, epoch, seed=3)
                 for r, w in itertools.product(range(world_size), range(num_workers))}
        flat = [s for part in parts.values() for s in part]
        assert sorted(flat) == sorted(shards)  # disjoint and complete
        per_rank = [sum(len(parts[r, w]) for w in range(num_workers)) for r in range(world_size)]
        assert max(per_rank) - min(per_rank) <= 1
        assert parts == {k: split_shards(shards, *k[:1], world_size, k[1], num_workers, epoch, 3)
                         for k in parts}
    orders = {tuple(split_shards(shards, epoch=e, seed=0)) for e in range(5)}
    assert len(orders) > 1 or num_shards < 3  # a new order every epoch


def test_split_shards_errors():
    with pytest.raises(ValueError, match="2 shards for 3 ranks"):
        split_shards(["a.tar", "b.tar"], 0, 3)
    with pytest.raises(ValueError, match="out of range"):
        split_shards(["a.tar"], 1, 1)
    with pytest.raises(ValueError, match="out of range"):
        split_shards(["a.tar"], 0, 1, worker=2, num_workers=2)


def test_stereo_segment(tmp_path):
    """A stereo segment keeps both channels; decoding averages them as load_audio does."""
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (16000, 2)).astype(np.float32)
    sf.write(tmp_path / "st.wav", x, 16000, subtype="FLOAT")
    row = Utterance("st", str(tmp_path / "st.wav"), start=0.1, end=0.6)
    (path,), _ = write_shards([row], tmp_path / "out", 1, progress=False)
    (utt, data), = iterate_shard(path)
    assert sf.info(io.BytesIO(data)).channels == 2
    assert torch.equal(decode_audio(data), load_audio(row.audio, start=0.1, end=0.6))
