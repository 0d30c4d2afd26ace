"""One channel of a two-channel call: rows name it (``channel: 0/1`` or ``left/right``, in every
list format), and loading, long-form streaming, shards, training examples and ``recognize``
read only that channel."""
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from chunkformer.data.audio import AudioError, FbankStream, load_audio, load_row
from chunkformer.data.features import compute_fbank
from chunkformer.data.manifest import ManifestError, read_manifest, write_manifest


@pytest.fixture(scope="module")
def call(vi_speech, tmp_path_factory):
    """A stereo 8 kHz call (agent left, customer right: two different sentences) and its two
    sides as mono files."""
    folder = tmp_path_factory.mktemp("call")
    sides = []
    for i in (1, 2):
        wave, rate = sf.read(vi_speech[i][0], dtype="int16")
        sides.append(wave[::2])  # 8 kHz (the sentences have no energy above 4 kHz to speak of)
    n = max(len(s) for s in sides)
    sides = [np.pad(s, (0, n - len(s))) for s in sides]
    stereo = folder / "call.wav"
    sf.write(stereo, np.stack(sides, axis=1), 8000, subtype="PCM_16")
    monos = []
    for name, side in zip(("left", "right"), sides):
        sf.write(folder / f"{name}.wav", side, 8000, subtype="PCM_16")
        monos.append(folder / f"{name}.wav")
    return stereo, monos, [vi_speech[1][1], vi_speech[2][1]]


def test_rows_name_their_channel_in_every_list_format(tmp_path, call):
    stereo = call[0]
    (tmp_path / "a.list").write_text(
        json.dumps({"key": "a", "wav": str(stereo), "channel": "left"}) + "\n"
        + json.dumps({"key": "b", "wav": str(stereo), "channel": 1}) + "\n"
        + json.dumps({"key": "c", "wav": str(stereo)}) + "\n")
    (tmp_path / "a.tsv").write_text(f"key\tpath\tchannel\na\t{stereo}\tRIGHT\nb\t{stereo}\t0\n"
                                    f"c\t{stereo}\t\n")
    (tmp_path / "a.json").write_text(json.dumps([{"utt_id": "a", "audio_path": str(stereo),
                                                  "channel": "1"}]))
    assert [r.channel for r in read_manifest(tmp_path / "a.list")] == [0, 1, None]
    assert [r.channel for r in read_manifest(tmp_path / "a.tsv")] == [1, 0, None]
    assert [r.channel for r in read_manifest(tmp_path / "a.json")] == [1]
    rows = read_manifest(tmp_path / "a.list")
    write_manifest(tmp_path / "back.list", rows)  # the channel survives a round trip
    assert [r.channel for r in read_manifest(tmp_path / "back.list")] == [0, 1, None]
    (tmp_path / "bad.list").write_text(json.dumps({"key": "a", "wav": str(stereo),
                                                   "channel": "middle"}) + "\n")
    with pytest.raises(ManifestError, match=r"bad.list:1: channel 'middle'"):
        read_manifest(tmp_path / "bad.list")


def test_a_channel_is_read_alone(call):
    stereo, monos, _ = call
    for channel, mono in enumerate(monos):
        alone = load_audio(mono)
        assert torch.equal(load_audio(stereo, channel=channel), alone)
        assert torch.equal(load_audio(stereo, start=0.5, end=1.5, channel=channel),
                           load_audio(mono, start=0.5, end=1.5))
        stream = FbankStream(stereo, channel=channel)
        assert torch.allclose(stream.read(0, stream.num_frames), compute_fbank(alone),
                              atol=1e-4)
    mixed = load_audio(stereo)
    assert not torch.equal(mixed, load_audio(monos[0]))
    with pytest.raises(AudioError, match="has 2 channel"):
        load_audio(stereo, channel=2)
    with pytest.raises(AudioError, match="has 1 channel"):
        load_audio(monos[0], channel=1)
    with pytest.raises(AudioError, match="has 2 channel"):
        FbankStream(stereo, channel=5)


def test_load_row_and_shards_read_the_row_channel(tmp_path, call):
    """load_row (what training examples, CMVN and fbank read) and shard members hold the
    row's channel alone."""
    from chunkformer.data.shards import iterate_shard, write_shards

    stereo, monos, texts = call
    rows_file = tmp_path / "rows.list"
    rows_file.write_text("".join(
        json.dumps({"key": f"side{c}", "wav": str(stereo), "txt": texts[c], "channel": c})
        + "\n" for c in (0, 1)))
    rows = read_manifest(rows_file)
    for row, mono in zip(rows, monos):
        assert torch.equal(load_row(row), load_audio(mono))
    paths, skipped = write_shards(rows, tmp_path / "shards", shard_size=1, progress=False)
    assert not skipped
    members = {row.key: data for shard in paths for row, data in iterate_shard(shard)}
    for c, mono in enumerate(monos):
        samples, rate = sf.read(io.BytesIO(members[f"side{c}"]), dtype="int16")
        assert rate == 8000 and samples.ndim == 1
        assert np.array_equal(samples, sf.read(mono, dtype="int16")[0])


@pytest.mark.parametrize("threshold", [600, 0], ids=["batch", "long_form"])
def test_recognize_decodes_the_row_channel(tmp_path, call, ref_model_dir, threshold):
    """Rows naming the channels of a stereo call decode as the two sides' own files do, on the
    batch path and the long-form (streamed) path."""
    from chunkformer.bin.recognize import main

    stereo, monos, _ = call
    rows = tmp_path / "rows.list"
    rows.write_text("".join(json.dumps({"key": f"{k}-{side}", "wav": str(w), "channel": c})
                            + "\n" for k, w in (("call", stereo),)
                            for c, side in enumerate(("left", "right")))
                    + "".join(json.dumps({"key": f"mono-{side}", "wav": str(m)}) + "\n"
                              for side, m in zip(("left", "right"), monos)))
    main(["--model_dir", str(ref_model_dir), "--data", str(rows), "--output_dir",
          str(tmp_path / "out"), "--chunk_size", "16", "--left_context_size", "24",
          "--right_context_size", "4", "--long_form_threshold", str(threshold)])
    text = dict(line.rstrip("\n").split(" ", 1) if " " in line else (line.strip(), "")
                for line in open(tmp_path / "out" / "text", encoding="utf-8"))
    for side in ("left", "right"):
        assert text[f"call-{side}"] == text[f"mono-{side}"]
    assert text["call-left"] != text["call-right"]


@pytest.fixture(scope="module")
def turns(vi_speech, tmp_path_factory):
    """A stereo 16 kHz call of three turns: agent (left) speaks, then the customer (right)
    speaks while the agent says a last sentence over them (a barge-in)."""
    folder = tmp_path_factory.mktemp("turns")
    waves = [sf.read(vi_speech[i][0], dtype="int16")[0] for i in (0, 1, 3)]
    gap = np.zeros(8000, np.int16)
    left = np.concatenate([waves[0], gap, np.zeros(len(waves[1]) // 2, np.int16), waves[2]])
    right = np.concatenate([np.zeros(len(waves[0]), np.int16), gap, waves[1]])
    n = max(len(left), len(right))
    left, right = np.pad(left, (0, n - len(left))), np.pad(right, (0, n - len(right)))
    sf.write(folder / "call.wav", np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    sf.write(folder / "agent.wav", left, 16000, subtype="PCM_16")
    sf.write(folder / "customer.wav", right, 16000, subtype="PCM_16")
    return folder


@pytest.mark.parametrize("threshold", [600, 0], ids=["batch", "long_form"])
def test_split_channels_give_one_time_ordered_transcript(tmp_path, turns, ref_model_dir,
                                                          threshold):
    from chunkformer.bin.recognize import main

    common = ["--model_dir", str(ref_model_dir), "--chunk_size", "16", "--left_context_size",
              "24", "--right_context_size", "4", "--long_form_threshold", str(threshold)]
    main([*common, "--data", str(turns), "--output_dir", str(tmp_path / "sides")])
    sides = {json.loads(x)["key"]: json.loads(x)
             for x in open(tmp_path / "sides" / "result.jsonl", encoding="utf-8")}
    main([*common, "--data", str(turns / "call.wav"), "--output_dir", str(tmp_path / "split"),
          "--channels", "split", "--channel_roles", "agent,customer", "--srt"])
    rows = [json.loads(x) for x in open(tmp_path / "split" / "result.jsonl", encoding="utf-8")]
    assert len(rows) == 1 and rows[0]["key"] == "call"
    call = rows[0]
    # each side's words are exactly those of its own file decoded alone
    for channel, role in enumerate(("agent", "customer")):
        mine = [(w["word"], w["start"]) for w in call["words"] if w["channel"] == channel]
        assert mine == [(w["word"], w["start"]) for w in sides[role]["words"]]
        assert all(w["role"] == role for w in call["words"] if w["channel"] == channel)
    starts = [s["words"][0]["start"] for s in call["segments"] if s["words"]]
    assert starts == sorted(starts)  # time-ordered across channels
    assert {s["channel"] for s in call["segments"]} == {0, 1}
    assert call["text"] == " ".join(s["decode"] for s in call["segments"] if s["decode"])
    srt = (tmp_path / "split" / "srt" / "call.srt").read_text(encoding="utf-8")
    assert "agent: " in srt and "customer: " in srt
    # the mono mix is still the default
    main([*common, "--data", str(turns / "call.wav"), "--output_dir", str(tmp_path / "mix")])
    mixed = json.loads(open(tmp_path / "mix" / "result.jsonl").readline())
    assert "channel" not in json.dumps(mixed["segments"])


def test_embeddings_of_a_stereo_call_are_per_channel(tmp_path, turns, ref_model_dir):
    from chunkformer.bin.extract_embeddings import main

    common = ["--model_dir", str(ref_model_dir), "--chunk_size", "0"]
    main([*common, "--data", str(turns), "--output_dir", str(tmp_path / "files")])
    main([*common, "--data", str(turns / "call.wav"), "--output_dir", str(tmp_path / "split")])
    for c, side in enumerate(("agent", "customer")):
        a = np.load(tmp_path / "split" / "frames" / f"call%40ch{c}.npy")
        b = np.load(tmp_path / "files" / "frames" / f"{side}.npy")
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    main([*common, "--data", str(turns / "call.wav"), "--output_dir", str(tmp_path / "mix"),
          "--channels", "mix"])
    assert (tmp_path / "mix" / "frames" / "call.npy").exists()
