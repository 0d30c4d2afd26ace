"""The server in this process, with an engine that can fail or be slow: a failure inside
decoding ends that round's calls with a message and the server goes on; a client far ahead of
the decoder is read no further while its backlog is full, and still gets its whole text."""
import asyncio
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("websockets")
from websockets.sync.client import connect  # noqa: E402

from chunkformer.decoding.endless import decode_long  # noqa: E402
from chunkformer.model import ChunkFormerModel  # noqa: E402
from chunkformer.serving import server as server_module  # noqa: E402
from chunkformer.serving.server import RecognitionServer  # noqa: E402
from chunkformer.streaming.group import TorchEngine  # noqa: E402


class Faulty(TorchEngine):
    """A TorchEngine that raises while ``fail`` is set and sleeps ``delay`` per forward."""

    fail, delay, server, most_pending = False, 0.0, None, 0

    def __call__(self, *args):
        if self.fail:
            raise RuntimeError("injected")
        time.sleep(self.delay)
        pending = [c.pending for c in self.server.calls.values()]
        self.most_pending = max([self.most_pending] + pending)
        return super().__call__(*args)


@pytest.fixture
def running(default_model):
    engine = Faulty(ChunkFormerModel.from_pretrained(default_model))
    server = RecognitionServer(engine, 8, 32)
    engine.server = server
    loop, ready = asyncio.new_event_loop(), threading.Event()

    tasks = []

    async def main():
        started = asyncio.Event()
        tasks.append(asyncio.create_task(server.serve("127.0.0.1", 0, started)))
        await started.wait()
        ready.set()
        try:
            await tasks[0]
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield engine, f"ws://127.0.0.1:{server.port}"
    loop.call_soon_threadsafe(tasks[0].cancel)
    thread.join(10)
    loop.close()


def stream(url, x, rate):
    with connect(url) as ws:
        ws.send(json.dumps({"signal": "start", "sample_rate": rate,
                            "continuous_decoding": True}))
        assert json.loads(ws.recv())["type"] == "server_ready"
        for i in range(0, len(x), rate // 10):
            ws.send(x[i:i + rate // 10].tobytes())
        ws.send(json.dumps({"signal": "end"}))
        return [json.loads(m) for m in ws]


def test_a_failing_round_ends_its_calls_and_the_server_goes_on(running, vi_speech):
    engine, url = running
    x, rate = sf.read(str(vi_speech[0][0]), dtype="int16")
    engine.fail = True
    messages = stream(url, x, rate)
    assert messages[-1]["status"] == "failed" and "internal error" in messages[-1]["message"]
    engine.fail = False
    assert stream(url, x, rate)[-1]["type"] == "speech_end"


def test_a_client_ahead_of_the_decoder_waits(running, vi_speech, default_model, monkeypatch):
    engine, url = running
    monkeypatch.setattr(server_module, "MAX_BACKLOG_SECONDS", 1)
    engine.delay = 0.05  # 50 ms per 640 ms chunk: far slower than the client sends
    x = np.concatenate([sf.read(str(p), dtype="int16")[0] for p, _ in vi_speech])
    messages = stream(url, x, 16000)
    assert engine.most_pending <= 2 * 16000 * 1 + 2 * 1600  # 1 s + one piece
    text = " ".join(json.loads(m["nbest"])[0]["sentence"] for m in messages
                    if m["type"] == "final_result")
    path = vi_speech[0][0].parent / "joined.wav"
    sf.write(str(path), x, 16000, subtype="PCM_16")
    expected = decode_long(ChunkFormerModel.from_pretrained(default_model), str(path), 8, 32, 0)
    assert text.replace(" ", "") == expected.text.replace(" ", "")
