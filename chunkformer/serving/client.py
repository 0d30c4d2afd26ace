"""A client for the recognition server: streams audio as a live call would.

:func:`stream_audio` sends 16-bit PCM in pieces of ``piece_ms`` at ``speed`` × real time (0: as
fast as the socket takes it), each once its last sample would have been spoken, then ``end``,
and returns every message the server sent with the moment it arrived, in seconds of audio time
since the call started (so at real-time speed, arrival minus a word's end time is the latency
the caller felt).
"""
import asyncio
import json
import time
from typing import Callable, List, Optional

import numpy as np


async def stream_audio(url: str, samples: np.ndarray, sample_rate: int, piece_ms: int = 100,
                       speed: float = 1.0, continuous_decoding: bool = True, nbest: int = 1,
                       on_message: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """Stream int16 ``samples`` → the server's messages, each with ``"arrived"`` (seconds since
    the first piece was sent, scaled back to audio time by ``speed``)."""
    from websockets.asyncio.client import connect

    pcm = np.asarray(samples, dtype="<i2")
    piece = max(1, sample_rate * piece_ms // 1000)
    messages: List[dict] = []
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"signal": "start", "nbest": nbest, "sample_rate": sample_rate,
                                  "continuous_decoding": continuous_decoding}))
        ready = json.loads(await ws.recv())
        if ready.get("status") != "ok":
            raise RuntimeError(f"server refused the call: {ready.get('message', ready)}")
        t0 = time.perf_counter()

        def clock():
            return (time.perf_counter() - t0) * (speed or 1.0)

        async def receive():
            async for text in ws:
                m = json.loads(text)
                m["arrived"] = clock()
                messages.append(m)
                if on_message is not None:
                    on_message(m)
                if m.get("type") == "speech_end" or m.get("status") == "failed":
                    return

        reader = asyncio.create_task(receive())
        for i in range(0, len(pcm), piece):
            if reader.done():  # the server ended the call (an endpoint, or an error)
                break
            if speed > 0:  # a piece exists once its last sample has been spoken
                end = min(i + piece, len(pcm))
                wait = (end / sample_rate) / speed - (time.perf_counter() - t0)
                if wait > 0:
                    await asyncio.sleep(wait)
            await ws.send(pcm[i:i + piece].tobytes())
        if not reader.done():
            await ws.send(json.dumps({"signal": "end"}))
        await reader
    return messages


def best(message: dict) -> dict:
    """The first hypothesis of a partial_result / final_result message."""
    return json.loads(message["nbest"])[0]
