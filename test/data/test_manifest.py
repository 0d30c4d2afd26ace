"""read_manifest over every list format, write_manifest round trips, display_key, and one-line
``file:line: problem`` errors for malformed lists."""
import json

import pytest

from chunkformer.data.audio import load_audio
from chunkformer.data.manifest import (
    ManifestError, Utterance, display_key, read_manifest, read_text, write_manifest)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def kaldi_dir(tmp_path, vi_speech):
    """A Kaldi data dir whose wav.scp names the synthetic speech (one absolute, one relative)."""
    (a, text_a), (b, text_b) = vi_speech[:2]
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "b.wav").write_bytes(b.read_bytes())
    data = tmp_path / "data" / "test"
    _write(data / "wav.scp", f"rec_a {a}\nrec_b ../../audio/b.wav\n\n")
    _write(data / "text", f"rec_a {text_a}\nrec_b\t{text_b}\n")
    return data


def test_single_file(vi_speech):
    path = vi_speech[0][0]
    assert read_manifest(path) == [Utterance(path.stem, str(path), group=str(path))]
    assert read_manifest(path)[0].path == str(path)  # the name bin/recognize reads


def test_folder_is_scanned_recursively_and_sorted(tmp_path, vi_speech):
    src = vi_speech[0][0].read_bytes()
    for name in ["b.wav", "a/z call.FLAC", "a/c.wav", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(src)
    rows = read_manifest(tmp_path)
    assert [r.key for r in rows] == ["a-c", "a-z_call", "b"]
    assert rows[1].audio == rows[1].group == str(tmp_path / "a/z call.FLAC")
    assert [r.text for r in rows] == [None, None, None]


def test_folder_pairs_audio_with_same_named_transcripts(tmp_path, vi_speech):
    """The VLSP layout: <name>.wav + <name>.txt (several lines, BOM) → the row's text."""
    src = vi_speech[0][0].read_bytes()
    for name in ["spk1/u1.wav", "spk1/u2.wav", "u3.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(src)
    (tmp_path / "spk1/u1.txt").write_text("\ufeffxin chào\n  quý khách \n", encoding="utf-8")
    (tmp_path / "u3.txt").write_text("cảm ơn", encoding="utf-8")
    rows = read_manifest(tmp_path)
    assert [(r.key, r.text) for r in rows] == [
        ("spk1-u1", "xin chào quý khách"), ("spk1-u2", None), ("u3", "cảm ơn")]
    (tmp_path / "u3.txt").write_bytes("cảm ơn".encode("cp1258", errors="replace") + b"\xff")
    with pytest.raises(ManifestError, match="u3.txt: not UTF-8 text"):
        read_manifest(tmp_path)


def test_folder_errors(tmp_path, vi_speech):
    with pytest.raises(ManifestError, match="no audio files"):
        read_manifest(tmp_path)
    for name in ["x.wav", "x.flac"]:
        (tmp_path / name).write_bytes(vi_speech[0][0].read_bytes())
    with pytest.raises(ManifestError, match="x.wav: duplicate key 'x'"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "feats.npy").write_bytes(b"\x93NUMPY\xff\xfe")
    with pytest.raises(ManifestError, match="feats.npy: not a UTF-8 text list"):
        read_manifest(tmp_path / "feats.npy")


def test_kaldi_dir_with_text(kaldi_dir, vi_speech):
    rows = read_manifest(kaldi_dir)
    assert rows == read_manifest(kaldi_dir / "wav.scp")
    assert [(r.key, r.text, r.start, r.end, r.group) for r in rows] == [
        ("rec_a", vi_speech[0][1], None, None, "rec_a"),
        ("rec_b", vi_speech[1][1], None, None, "rec_b"),
    ]
    assert rows[0].audio == str(vi_speech[0][0])
    assert load_audio(rows[1].audio).numel() > 0  # relative path resolved against data/test


def test_kaldi_segments_utt2dur_utt2spk(kaldi_dir):
    _write(kaldi_dir / "segments", "s1 rec_a 0.0 0.5\ns2 rec_b 0.25 1.0\ns3 rec_b 1.0 1.5\n")
    _write(kaldi_dir / "text", "s1 xin chào\ns2 số tài khoản\ns3\n")
    _write(kaldi_dir / "utt2dur", "s1 0.5\ns2 0.75\n")
    _write(kaldi_dir / "utt2spk", "s1 agent7\ns2 cust9\ns3 cust9\n")
    rows = read_manifest(kaldi_dir)
    assert [(r.key, r.start, r.end, r.duration, r.text, r.speaker, r.group) for r in rows] == [
        ("s1", 0.0, 0.5, 0.5, "xin chào", "agent7", "rec_a"),
        ("s2", 0.25, 1.0, 0.75, "số tài khoản", "cust9", "rec_b"),
        ("s3", 1.0, 1.5, 0.5, "", "cust9", "rec_b"),
    ]
    wave = load_audio(rows[1].audio, start=rows[1].start, end=rows[1].end)
    assert len(wave) == 0.75 * 16000


def test_kaldi_audio_root(tmp_path):
    _write(tmp_path / "lists" / "wav.scp", "r1 calls/r1.wav\n")
    _write(tmp_path / "lists" / "utt2dur", "r1 3.5\n")
    row, = read_manifest(tmp_path / "lists", audio_root=tmp_path / "store")
    assert row.audio == str(tmp_path / "store" / "calls/r1.wav") and row.duration == 3.5


def test_data_list(tmp_path, vi_speech):
    (a, text), (b, _) = vi_speech[:2]
    rows = [
        {"key": "u1", "wav": str(a), "txt": text, "intent": "balance", "snr_db": None},
        {"key": "u2", "wav": "sub/b.wav", "start": 0.5, "duration": 0.25, "spk": "s1",
         "call_id": "c1"},
        {"key": "u3", "audio": str(b), "text": "t", "start": 0.1, "end": 0.4, "duration": 0.3},
        {"key": 17, "audio_filepath": str(b), "offset": "1.5", "duration": 2},  # NeMo style
    ]
    data_list = _write(tmp_path / "data.list",
                       "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    got = read_manifest(data_list)
    assert got == [
        Utterance("u1", str(a), text, group=str(a), labels={"intent": "balance", "snr_db": None}),
        Utterance("u2", str(tmp_path / "sub/b.wav"), None, 0.5, 0.75, 0.25, "s1", "c1"),
        Utterance("u3", str(b), "t", 0.1, 0.4, pytest.approx(0.3), group=str(b)),
        Utterance("17", str(b), None, 1.5, 3.5, 2.0, group=str(b)),
    ]


def test_json_array_with_audio_root(tmp_path):
    text = """[
      {"utt_id": "call1_0001", "audio_path": "2024/call1.wav", "text": "Xin chào",
       "start": 0, "end": 2.5, "intent": "greet"},
      {
        "utt_id": "call1_0002",
        "audio_path": "2024/call1.wav",
        "text": "Số dư",
        "start": 2.5, "end": 4.0, "call_id": "call1"
      }
    ]"""
    path = _write(tmp_path / "meta" / "manifest.json", text)
    rows = read_manifest(path, audio_root=tmp_path / "audio")
    audio = str(tmp_path / "audio" / "2024/call1.wav")
    assert rows == [
        Utterance("call1_0001", audio, "Xin chào", 0.0, 2.5, 2.5, group=audio,
                  labels={"intent": "greet"}),
        Utterance("call1_0002", audio, "Số dư", 2.5, 4.0, 1.5, group="call1"),
    ]
    _write(path, text.replace('"end": 4.0', '"end": 1.0'))
    with pytest.raises(ManifestError, match=r"manifest.json:4: end 1.0 ≤ start 2.5$"):
        read_manifest(path)


COMMON_VOICE_TSV = (
    "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender"
    "\taccents\tvariant\tlocale\tsegment\n"
    "ab12\tcommon_voice_vi_1.mp3\ts1\tXin chào \"bạn\"\t\t2\t0\ttwenties\t\t\t\tvi\t\n"
    "cd34\tcommon_voice_vi_2.mp3\ts2\tCảm ơn.\t\t3\t1\t\tfemale_feminine\t\t\tvi\t\n"
)


def test_common_voice_tsv(tmp_path):
    path = _write(tmp_path / "cv" / "train.tsv", COMMON_VOICE_TSV)
    rows = read_manifest(path, audio_root=tmp_path / "cv" / "clips")
    clip = str(tmp_path / "cv" / "clips" / "common_voice_vi_1.mp3")
    assert rows[0] == Utterance(
        "common_voice_vi_1", clip, 'Xin chào "bạn"', speaker="ab12", group=clip,
        labels={"sentence_id": "s1", "up_votes": "2", "down_votes": "0", "age": "twenties",
                "locale": "vi"})
    assert (rows[1].key, rows[1].text, rows[1].speaker) == ("common_voice_vi_2", "Cảm ơn.", "cd34")


def test_csv_export(tmp_path):
    text = ('\ufeffFile Name,Transcript,Duration,Agent ID\n'
            'calls/a 1.wav,"Dạ, em chào anh",3.2,ag1\n\n'
            'calls/b.wav,,1.0,ag2\n')
    path = _write(tmp_path / "export.txt", text)  # detected by its header, not its name
    rows = read_manifest(path)
    assert [(r.key, r.audio, r.text, r.duration, r.labels) for r in rows] == [
        ("calls-a_1", str(tmp_path / "calls/a 1.wav"), "Dạ, em chào anh", 3.2, {"agent_id": "ag1"}),
        ("calls-b", str(tmp_path / "calls/b.wav"), None, 1.0, {"agent_id": "ag2"}),
    ]


def test_read_text(tmp_path):
    path = _write(tmp_path / "text", "a  xin   chào\nb\nc\tcảm ơn\n")
    assert read_text(path) == {"a": "xin   chào", "b": "", "c": "cảm ơn"}


def test_write_manifest_round_trip(tmp_path):
    rows = [
        Utterance("k1", "/data/a.wav", "Xin chào!", None, None, 2.0, "spk", "call",
                  {"intent": "greet", "scores": [0.5, 1], "snr_db": None}),
        Utterance("k2", "/data/b.flac", None, 1.25, 2.5, 1.25, group="/data/b.flac"),
        Utterance("k3", "/data/c.wav", "", 0.5, group="g"),
    ]
    path = tmp_path / "out" / "data.list"
    write_manifest(path, rows)
    assert read_manifest(path) == rows
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == ["key", "wav", "txt", "duration", "speaker", "group", "intent",
                           "scores", "snr_db"]
    with pytest.raises(ValueError, match="reserved"):
        write_manifest(path, [Utterance("k", "/a.wav", labels={"path": "x"})])


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    """A list read through relative paths still finds its audio once written elsewhere."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "cv" / "train.tsv", "path\tsentence\na.mp3\txin chào\n")
    rows = read_manifest("cv/train.tsv", audio_root="cv/clips")
    assert rows[0].audio == str(tmp_path / "cv" / "clips" / "a.mp3")
    _write(tmp_path / "scp" / "wav.scp", "r1 ../audio/r1.wav\n")
    assert read_manifest("scp")[0].audio == str(tmp_path / "audio" / "r1.wav")
    write_manifest("out/deeper/data.list", rows)
    assert read_manifest(tmp_path / "out/deeper/data.list") == rows


def test_display_key():
    key = "0912345678_20240101"
    assert display_key(key) == display_key(key, "plain") == key
    hashed = display_key(key, "hash")
    assert hashed == display_key(key, "hash") and len(hashed) == 16 and "0912345678" not in hashed
    assert display_key(key, "omit") == "<omitted>"
    with pytest.raises(ValueError, match="not one of"):
        display_key(key, "mask")


MALFORMED = [
    ("data.list", '{"key": "a", "wav": "a.wav"}\n\n{"key": "b"}\n',
     "data.list:3: missing field 'wav'"),
    ("data.list", '{"key": "a", "wav": "a.wav"}\n{"key": \n', "data.list:2: invalid JSON"),
    ("data.list", '{"wav": "a.wav"}\n', "data.list:1: missing field 'key'"),
    ("data.list", '{"key": "", "wav": "a.wav"}\n', "data.list:1: missing field 'key'"),
    ("data.list", '{"key": "a b", "wav": "a.wav"}\n', "data.list:1: key 'a b' contains whitespace"),
    ("data.list", '{"key": "a", "wav": "a.wav", "start": "x"}\n',
     "data.list:1: start 'x' is not a number of seconds"),
    ("data.list", '{"key": "a", "wav": "a.wav", "duration": true}\n',
     "data.list:1: duration True is not a number of seconds"),
    ("data.list", '{"key": "a", "wav": "a.wav", "end": NaN}\n', "data.list:1: end nan is not a"),
    ("data.list", '{"key": "a", "wav": "a.wav", "start": -1}\n', "data.list:1: start -1 is not"),
    ("data.list", '{"key": "a", "wav": "a.wav", "start": 2, "end": 2}\n',
     "data.list:1: end 2.0 ≤ start 2.0"),
    ("data.list", '{"key": "a", "wav": "a.wav", "start": 1, "end": 2, "duration": 3}\n',
     "data.list:1: duration 3.0 disagrees with end - start = 1.000"),
    ("data.list", '{"key": "a", "wav": "a.wav", "duration": 0}\n', "data.list:1: duration 0.0 ≤ 0"),
    ("data.list", '{"key": "a", "wav": "a.wav", "txt": 5}\n', "data.list:1: text 5 must be a"),
    ("data.list", '{"key": "a", "wav": "a.wav", "speaker": [1]}\n', "data.list:1: speaker [1]"),
    ("data.list", '{"key": "a", "wav": "a.wav", "audio": "b.wav"}\n',
     "data.list:1: fields 'wav' and 'audio' both give the audio"),
    ("data.list", '{"key": "a", "wav": "a.wav"}\n{"key": "a", "wav": "b.wav"}\n',
     "data.list:2: duplicate key 'a' (first at"),
    ("data.list", '{"key": "a", "wav": "gunzip -c a.wav.gz |"}\n', "data.list:1: piped command"),
    ("data.list", '["not", "an object"]\n', "data.list:1: expected a JSON object"),
    ("data.json", '[\n {"utt_id": "a", "audio_path": "a.wav"},\n "x"\n]\n',
     "data.json:3: expected a JSON object"),
    ("data.json", '[\n {"utt_id": "a", "audio_path": "a.wav"},\n {"utt_id": "a",\n'
     '  "audio_path": "b.wav"}]', "data.json:3: duplicate key 'a'"),
    ("data.json", '[\n {"utt_id": "a"\n  "audio_path": "a.wav"}]\n', "data.json:3: invalid JSON"),
    ("list.tsv", "path\tsentence\na.wav\tx\ty\n", "list.tsv:2: 3 cells, the header has 2"),
    ("list.tsv", "sentence\tspeaker\nx\ty\n", "list.tsv:1: no audio column"),
    ("list.csv", "path,Age,age\na.wav,1,2\n", "list.csv:1: column 'age' appears twice"),
    ("list.tsv", "path\twav\na.wav\tb.wav\n", "list.tsv:1: fields 'wav' and 'path' both give"),
    ("list.tsv", "path\tduration\na.wav\t1.0\nb.wav\tlong\n",
     "list.tsv:3: duration 'long' is not a number of seconds"),
    ("list.tsv", "path\nx/a.wav\nx/a.flac\n", "list.tsv:3: duplicate key 'x-a'"),
    ("list.tsv", "\n\n", "list.tsv: empty table"),
    ("wav.scp", "a a.wav\nb\n", "wav.scp:2: expected '<key> <path>'"),
    ("wav.scp", "a sph2pipe -f wav a.sph |\n", "wav.scp:1: piped command"),
    ("wav.scp", "a a.wav\na b.wav\n", "wav.scp:2: duplicate key 'a'"),
    ("segments", "s1 rec 0 1\ns2 rec 3.0 1.2\n", "segments:2: end 1.2 ≤ start 3.0"),
    ("segments", "s1 other 0 1\n", "segments:1: recording 'other' is not in wav.scp"),
    ("segments", "s1 rec zero 1\n", "segments:1: start 'zero' is not a number"),
    ("segments", "s1 rec 0\n", "segments:1: expected '<utt> <recording> <start> <end>'"),
    ("text", "rec hello\nrec again\n", "text:2: duplicate key 'rec'"),
    ("text", "rec hello\nother hi\n", "text:2: utterance 'other' is not in wav.scp / segments"),
    ("utt2dur", "rec\n", "utt2dur:1: expected '<utt> <seconds>'"),
    ("utt2dur", "rec -3\n", "utt2dur:1: duration -3.0 is not a finite number"),
    ("utt2spk", "rec a b\n", "utt2spk:1: expected '<utt> <speaker>'"),
]


@pytest.mark.parametrize("name, content, message", MALFORMED)
def test_malformed_lists_name_file_and_line(tmp_path, name, content, message):
    kaldi = name in ("wav.scp", "segments", "text", "utt2dur", "utt2spk")
    if kaldi and name != "wav.scp":
        _write(tmp_path / "wav.scp", "rec rec.wav\n")
    _write(tmp_path / name, content)
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path / ("wav.scp" if kaldi else name))
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(tmp_path))
    assert message in text
