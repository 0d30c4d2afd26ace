"""read_inputs over every input format, and one-line file:line errors for malformed lists."""
import json

import pytest

from chunkformer.data.audio import load_audio
from chunkformer.data.inputs import AudioItem, InputError, read_inputs, read_text


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
    assert read_inputs(path) == [AudioItem(key=path.stem, path=str(path))]


def test_folder_is_scanned_recursively_and_sorted(tmp_path, vi_speech):
    src = vi_speech[0][0].read_bytes()
    for name in ["b.wav", "a/z call.FLAC", "a/c.wav", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(src)
    items = read_inputs(tmp_path)
    assert [i.key for i in items] == ["a-c", "a-z_call", "b"]
    assert items[1].path == str(tmp_path / "a/z call.FLAC")


def test_folder_errors(tmp_path, vi_speech):
    with pytest.raises(InputError, match="no audio files"):
        read_inputs(tmp_path)
    for name in ["x.wav", "x.flac"]:
        (tmp_path / name).write_bytes(vi_speech[0][0].read_bytes())
    with pytest.raises(InputError, match="duplicate key 'x'"):
        read_inputs(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_inputs(tmp_path / "missing")
    (tmp_path / "feats.npy").write_bytes(b"\x93NUMPY\xff\xfe")
    with pytest.raises(InputError, match="feats.npy: not a UTF-8 text list"):
        read_inputs(tmp_path / "feats.npy")


def test_kaldi_dir_with_text(kaldi_dir, vi_speech):
    items = read_inputs(kaldi_dir)
    assert items == read_inputs(kaldi_dir / "wav.scp")
    assert [(i.key, i.text, i.start, i.end) for i in items] == [
        ("rec_a", vi_speech[0][1], None, None),
        ("rec_b", vi_speech[1][1], None, None),
    ]
    assert items[0].path == str(vi_speech[0][0])
    assert load_audio(items[1].path).numel() > 0  # relative path resolved against data/test


def test_kaldi_segments(kaldi_dir):
    _write(kaldi_dir / "segments", "s1 rec_a 0.0 0.5\ns2 rec_b 0.25 1.0\n")
    _write(kaldi_dir / "text", "s1 xin chào\ns2 số tài khoản\n")
    items = read_inputs(kaldi_dir)
    assert [(i.key, i.start, i.end, i.text) for i in items] == [
        ("s1", 0.0, 0.5, "xin chào"),
        ("s2", 0.25, 1.0, "số tài khoản"),
    ]
    wave = load_audio(items[1].path, start=items[1].start, end=items[1].end)
    assert len(wave) == 0.75 * 16000


def test_data_list(tmp_path, vi_speech):
    (a, text), (b, _) = vi_speech[:2]
    rows = [
        {"key": "u1", "wav": str(a), "txt": text},
        {"key": "u2", "wav": "sub/b.wav", "start": 0.5, "duration": 0.25},
        {"key": "u3", "audio": str(b), "text": "t", "start": 0.1, "end": 0.4},
    ]
    data_list = _write(tmp_path / "data.list", "".join(json.dumps(r) + "\n" for r in rows))
    assert read_inputs(data_list) == [
        AudioItem("u1", str(a), None, None, text),
        AudioItem("u2", str(tmp_path / "sub/b.wav"), 0.5, 0.75, None),
        AudioItem("u3", str(b), 0.1, 0.4, "t"),
    ]


def test_read_text(tmp_path):
    path = _write(tmp_path / "text", "a  xin   chào\nb\nc\tcảm ơn\n")
    assert read_text(path) == {"a": "xin   chào", "b": "", "c": "cảm ơn"}


MALFORMED = [
    ("data.list", '{"key": "a", "wav": "a.wav"}\n\n{"key": "b"}\n',
     "data.list:3: missing field 'wav'"),
    ("data.list", '{"key": "a", "wav": "a.wav"}\n{"key": \n', "data.list:2: invalid JSON"),
    ("data.list", '{"key": "a", "wav": "a.wav", "start": "x"}\n', "data.list:1: field 'start'"),
    ("data.list", '{"key": "a", "wav": "a.wav"}\n{"key": "a", "wav": "b.wav"}\n',
     "data.list:2: duplicate key 'a'"),
    ("wav.scp", "a a.wav\nb\n", "wav.scp:2: expected '<key> <path>'"),
    ("wav.scp", "a sph2pipe -f wav a.sph |\n", "wav.scp:1: piped command"),
    ("wav.scp", "a a.wav\na b.wav\n", "wav.scp:2: duplicate key 'a'"),
    ("segments", "s1 rec 0 1\ns2 rec 3.0 1.2\n", "segments:2: end 1.2 ≤ start 3.0"),
    ("segments", "s1 other 0 1\n", "segments:1: recording 'other' is not in wav.scp"),
    ("segments", "s1 rec zero 1\n", "segments:1: start 'zero' is not a number"),
    ("segments", "s1 rec 0\n", "segments:1: expected '<utt> <recording> <start> <end>'"),
    ("text", "rec hello\nrec again\n", "text:2: duplicate key 'rec'"),
]


@pytest.mark.parametrize("name, content, message", MALFORMED)
def test_malformed_lists_name_file_and_line(tmp_path, name, content, message):
    if name != "data.list":
        _write(tmp_path / "wav.scp", "rec rec.wav\n")
    _write(tmp_path / name, content)
    with pytest.raises(InputError) as err:
        read_inputs(tmp_path / ("data.list" if name == "data.list" else "wav.scp"))
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(tmp_path))
    assert message in text
