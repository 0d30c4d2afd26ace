"""The websocket server, driven by a client written here from WeNet's runtime protocol (not
from its code, nor from ours): the reference vector's long file gives the same final text as
`recognize` in the same context, real speech gives partials then finals with word times,
calls run side by side, and every kind of bad input is answered without hurting other calls."""
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from chunkformer.decoding.endless import decode_long  # noqa: E402
from chunkformer.model import ChunkFormerModel  # noqa: E402

LIMIT = 3


def start_server(args):
    cmd = [sys.executable, "-m", "chunkformer.bin.serve", "--port", "0", "--host", "127.0.0.1",
           "--max_connections", str(LIMIT), "--num_threads", "1", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r"ws://[\d.]+:(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{match.group(1)}"


@pytest.fixture(scope="module")
def server(default_model):
    proc, url = start_server(["--model_dir", default_model, "--endpoint_silence", "0.5"])
    yield url
    proc.terminate()
    proc.wait(10)


def pcm16(path, rate=None):
    x, sr = sf.read(str(path), dtype="int16")
    if rate and rate != sr:
        import torch
        import torchaudio

        y = torchaudio.functional.resample(torch.from_numpy(x).double(), sr, rate).numpy()
        x, sr = np.clip(np.round(y), -32768, 32767).astype(np.int16), rate
    return x, sr


def call(url, samples, rate, piece=1600, start=None, end=True, speed=None):
    """One call by the protocol: start, binary PCM pieces (``speed`` × real time, else as
    fast as possible), end; → every message received."""
    with connect(url) as ws:
        ws.send(json.dumps(start or {"signal": "start", "nbest": 1, "sample_rate": rate,
                                     "continuous_decoding": True}))
        ready = json.loads(ws.recv())
        assert ready == {"status": "ok", "type": "server_ready"}
        messages = []
        data = samples.astype("<i2").tobytes()
        for i in range(0, len(data), 2 * piece):
            ws.send(data[i:i + 2 * piece])
            if speed:
                time.sleep(piece / rate / speed)
            try:  # read what is there without waiting
                while True:
                    messages.append(json.loads(ws.recv(timeout=0)))
            except TimeoutError:
                pass
            except ConnectionClosed:
                return messages
        if end:
            ws.send(json.dumps({"signal": "end"}))
        try:
            for text in ws:
                messages.append(json.loads(text))
        except ConnectionClosed:
            pass
        return messages


def finals(messages):
    return [json.loads(m["nbest"])[0] for m in messages if m.get("type") == "final_result"]


def refused(url, bad, after_start=False):
    """Send ``bad`` (text or bytes; after a good start if asked) → the failed message and the
    close code."""
    with connect(url) as ws:
        if after_start:
            ws.send(json.dumps({"signal": "start", "sample_rate": 16000}))
            assert json.loads(ws.recv())["type"] == "server_ready"
        ws.send(bad)
        message = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        return message, ws.protocol.close_code


def test_reference_long_file_gives_the_text_of_recognize(ref_model_dir, reference_dir,
                                                          ref_meta, tmp_path):
    """Done-when: the reference vector's long file through `serve` = `recognize` (8/32/0)."""
    from chunkformer.bin import recognize

    long_file = reference_dir / ref_meta["long_wav"]
    recognize.main(["--model_dir", str(ref_model_dir), "--data", str(long_file), "--output_dir",
                    str(tmp_path), "--chunk_size", "8", "--left_context_size", "32",
                    "--right_context_size", "0", "--long_form_threshold", "0"])
    expected = (tmp_path / "text").read_text(encoding="utf-8").split(maxsplit=1)[1].strip()
    proc, url = start_server(["--model_dir", ref_model_dir])
    try:
        samples, rate = pcm16(long_file)
        messages = call(url, samples, rate, piece=3200)
    finally:
        proc.terminate()
        proc.wait(10)
    assert messages[-1] == {"status": "ok", "type": "speech_end"}
    # the random model's endpoints may fall inside a word, where joining finals adds a space
    got = "".join(f["sentence"] for f in finals(messages))
    assert len(finals(messages)) > 1 and got.replace(" ", "") == expected.replace(" ", "")


def test_real_speech_partials_finals_and_word_times(server, default_model, vi_speech, tmp_path):
    pieces = []
    for path, _ in vi_speech[:3]:
        x, _ = pcm16(path, 8000)
        pieces += [np.zeros(8000, np.int16), x]
    samples = np.concatenate(pieces)
    sf.write(str(tmp_path / "side.wav"), samples, 8000, subtype="PCM_16")
    whole = decode_long(ChunkFormerModel.from_pretrained(default_model), str(tmp_path / "side.wav"),
                        8, 32, 0)
    messages = call(server, samples, 8000, piece=800, speed=10)  # partials need time to come
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "speech_end" and kinds.index("partial_result") < kinds.index("final_result")
    assert kinds[-2] == "final_result"  # end is always answered by a final result (WeNet)
    results = [r for r in finals(messages) if r["sentence"]]  # (empty if nothing was left)
    assert len(results) == 3  # one per sentence: a second of silence ends each
    decoded = [m["decoded_ms"] for m in messages if "decoded_ms" in m]
    assert decoded == sorted(decoded) and decoded[-1] <= len(samples) / 8
    for m in messages:  # a final's words lie in the audio decoded when it was sent
        for w in json.loads(m.get("nbest", "[{}]"))[0].get("word_pieces", []):
            assert w["end"] <= m["decoded_ms"]
    assert " ".join(r["sentence"] for r in results) == whole.text
    times = [w for r in results for w in r["word_pieces"]]
    assert [w["word"] for w in times] == whole.text.split()
    assert all(isinstance(w["start"], int) and w["start"] < w["end"] for w in times)
    assert all(a["end"] <= b["start"] for a, b in zip(times, times[1:]))
    assert times[0]["start"] >= 1000 - 160  # after the first second of silence, in ms
    assert times[-1]["end"] <= len(samples) / 8 + 80


def test_single_utterance_stops_at_the_first_endpoint(server, vi_speech):
    pieces = []
    for path, _ in vi_speech[:2]:
        x, _ = pcm16(path, 16000)
        pieces += [x, np.zeros(16000, np.int16)]
    messages = call(server, np.concatenate(pieces), 16000, piece=1600, end=False,
                    start={"signal": "start", "sample_rate": 16000})  # WeNet's default: off
    kinds = [m["type"] for m in messages]
    assert kinds.count("final_result") == 1 and kinds[-1] == "speech_end"


def test_calls_side_by_side_each_get_their_own_text(server, default_model, vi_speech):
    model = ChunkFormerModel.from_pretrained(default_model)
    expected = [decode_long(model, str(p), 8, 32, 0).text for p, _ in vi_speech[:LIMIT]]
    got = [None] * LIMIT

    def one(i):
        x, rate = pcm16(vi_speech[i][0])
        got[i] = " ".join(f["sentence"] for f in finals(call(server, x, rate, piece=320))
                          if f["sentence"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(LIMIT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == expected


@pytest.mark.parametrize("bad, after_start, message", [
    ("hello", False, "JSON"),
    (json.dumps([1, 2]), False, "JSON objects"),
    (json.dumps({"nbest": 1}), False, "no signal"),
    (json.dumps({"signal": "pause"}), False, "Unexpected signal"),
    (json.dumps({"signal": "start", "nbest": "2"}), False, "nbest"),
    (json.dumps({"signal": "start", "continuous_decoding": 1}), False, "continuous_decoding"),
    (json.dumps({"signal": "start", "sample_rate": 44100}), False, "sample_rate 44100"),
    (b"\x00\x01" * 100, False, "Start signal is expected"),
    (json.dumps({"signal": "end"}), False, "end received before start"),
    (b"\x00\x01\x02", True, "whole 16-bit samples, got 3 bytes"),
    (json.dumps({"signal": "start"}), True, "start received twice"),
])
def test_bad_input_is_answered_and_the_server_goes_on(server, vi_speech, bad, after_start,
                                                      message):
    reply, code = refused(server, bad, after_start)
    assert reply["status"] == "failed" and message in reply["message"], reply
    assert code == 1008
    x, rate = pcm16(vi_speech[0][0])  # a good call still works
    assert finals(call(server, x, rate))


def test_connection_limit_and_clients_that_go_away(server, vi_speech):
    x, rate = pcm16(vi_speech[0][0])
    open_calls, held = [], contextlib.ExitStack()
    for _ in range(LIMIT):  # the limit's worth of calls, each mid-way
        ws = held.enter_context(connect(server))
        ws.send(json.dumps({"signal": "start", "sample_rate": rate}))
        assert json.loads(ws.recv())["type"] == "server_ready"
        ws.send(x[:rate].tobytes())
        open_calls.append(ws)
    with connect(server) as extra:  # one too many: refused at once, try again later
        reply = json.loads(extra.recv(timeout=10))
        with pytest.raises(ConnectionClosed):
            extra.recv(timeout=10)
        assert reply["status"] == "failed" and f"limit {LIMIT}" in reply["message"]
        assert extra.protocol.close_code == 1013
    for ws in open_calls:  # every client goes away mid-call, without end or close
        ws.socket.close()
    held.close()
    deadline = time.time() + 20
    while True:  # their slots come back: the limit's worth of calls work again
        try:
            results = []
            threads = [threading.Thread(target=lambda: results.append(finals(
                call(server, x, rate)))) for _ in range(LIMIT)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert len(results) == LIMIT and all(results)
            break
        except (AssertionError, ConnectionClosed):
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def test_stream_client_tool(server, vi_speech, default_model):
    path = vi_speech[1][0]
    expected = decode_long(ChunkFormerModel.from_pretrained(default_model), str(path), 8, 32,
                           0).text

    def client(*extra):
        return subprocess.run([sys.executable, "-m", "chunkformer.bin.stream_client", "--url",
                               server, "--wav", str(path), "--speed", "0", *extra],
                              capture_output=True, text=True, timeout=120)

    out = client()  # at the file's own rate: the printed finals are the offline text
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert all(re.match(r"\[\d+\.\d\d-\d+\.\d\d\] ", ln) for ln in lines if ln.strip())
    assert " ".join(ln.split("] ", 1)[1] for ln in lines if "] " in ln) == expected
    out = client("--sample_rate", "8000")  # resampled before sending
    assert out.returncode == 0 and re.match(r"\[\d+\.\d\d-\d+\.\d\d\] ",
                                            out.stdout.strip().splitlines()[-1])
    bad = client("--sample_rate", "44100")
    assert bad.returncode == 1 and "sample_rate 44100 is not supported" in bad.stderr


def test_a_beam_server_with_hotwords_gives_the_streams_finals_and_nbest(default_model,
                                                                         vi_speech, tmp_path):
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("ngân hàng\t1.5\nsố dư tài khoản\n", encoding="utf-8")
    pieces = []
    for path, _ in vi_speech[:3]:
        x, _ = pcm16(path, 8000)
        pieces += [np.zeros(8000, np.int16), x]
    samples = np.concatenate(pieces)
    model = ChunkFormerModel.from_pretrained(default_model)
    stream = model.stream(8, 32, 0, beam_size=4, bias=model.decoding_bias(hotwords=hotwords),
                          endpoint_silence=0.5)
    stream.accept_waveform(samples, 8000)
    stream.finish()
    expected = stream.pop_finals()
    proc, url = start_server(["--model_dir", default_model, "--endpoint_silence", "0.5",
                              "--beam_size", "4", "--hotwords", hotwords])
    try:
        messages = call(url, samples, 8000, piece=800, start={
            "signal": "start", "nbest": 3, "sample_rate": 8000, "continuous_decoding": True})
    finally:
        proc.terminate()
        proc.wait(10)
    results = [json.loads(m["nbest"]) for m in messages if m.get("type") == "final_result"]
    results = [r for r in results if r[0]["sentence"]]
    assert [r[0]["sentence"] for r in results] == [f["text"] for f in expected]
    assert all(1 <= len(r) <= 3 and "word_pieces" in r[0] for r in results)
    assert any(len(r) > 1 for r in results)
    for r, f in zip(results, expected):
        assert [a["sentence"] for a in r[1:]] == [a["text"] for a in f["nbest"][1:3]]
        assert all(set(a) == {"sentence"} for a in r[1:])


@pytest.mark.parametrize("cap", [None, 2])
def test_a_transducer_model_is_served_with_its_own_search(cap):
    """The reference transducer (random weights): the server's finals are a stream's, with
    the model's symbol cap or ``--max_symbols`` (2 bites: the finals change)."""
    root = Path(__file__).resolve().parent.parent / "fixtures"
    folder, wav = root / "reference-rnnt-small" / "model", root / "reference-small" / "wavs"
    samples, rate = pcm16(wav / "utt0_cv16k.flac")
    model = ChunkFormerModel.from_pretrained(folder)

    def stream_finals():
        stream = model.stream(8, 32, 0, endpoint_silence=0.5)
        stream.accept_waveform(samples, rate)
        stream.finish()
        return [f["text"] for f in stream.pop_finals()]

    expected, options = stream_finals(), ["--model_dir", folder, "--endpoint_silence", "0.5"]
    if cap is not None:
        model.max_symbols, options = cap, options + ["--max_symbols", cap]
        expected, uncapped = stream_finals(), expected
        assert expected != uncapped
    proc, url = start_server(options)
    try:
        messages = call(url, samples, rate, piece=1600)
    finally:
        proc.terminate()
        proc.wait(10)
    got = [r["sentence"] for r in finals(messages) if r["sentence"]]
    assert got == expected and expected
