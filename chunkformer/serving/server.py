"""A websocket server for live recognition that speaks WeNet's runtime protocol.

Per connection (one call side):

    client → {"signal": "start", "nbest": 1, "continuous_decoding": true, "sample_rate": 8000}
    server → {"status": "ok", "type": "server_ready"}
    client → binary frames of 16-bit little-endian mono PCM at the announced rate, any size
    server → {"status": "ok", "type": "partial_result", "nbest": "[{\"sentence\": …}]",
              "decoded_ms": …}
    server → {"status": "ok", "type": "final_result",
              "nbest": "[{\"sentence\": …, \"word_pieces\": [{\"word\", \"start\", \"end\"}]}]"}
    client → {"signal": "end"}
    server → the last final_result, then {"status": "ok", "type": "speech_end"}; closes

As in WeNet, ``nbest`` is a JSON string, word times are integer milliseconds (here from the
start of the call), ``continuous_decoding`` false (the default) ends recognition at the first
endpoint (final_result + speech_end), and ``sample_rate`` defaults to 16000 (8000 or 16000 here,
or any rate in ``sample_rates``). Greedy CTC gives one hypothesis; a server started with a beam
(``beam_size``, and hotwords / LM through ``bias``) lists up to ``nbest`` sentences in each
final result (the first with its word pieces), partial results the best one.
A partial result follows every step that decoded new audio of an open utterance with text; each
result also says how much audio the decoder has read (``decoded_ms``, ignored by WeNet clients).

Bad input gets ``{"status": "failed", "message": …}`` and that connection is closed; the other
calls go on: text that is not a JSON object with a known ``signal``, options of the wrong type,
an unsupported sample rate, audio before ``start``, a second ``start``, an odd number of bytes, a
connection over ``max_connections`` (refused at once, close code 1013: try again later).
A client that goes away mid-call is forgotten; one that sends audio faster than it is decoded
is read no further while 30 s of its audio wait. A failure inside decoding (a bug, not bad
input) ends the calls of that round with a message and the server goes on.

All calls share one model and one :class:`~chunkformer.streaming.group.StreamGroup`: a single
worker thread takes the audio that arrived since its last round, then encodes every call's
ready chunk together, one batched forward per chunk step, while the event loop keeps reading.
"""
import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from chunkformer.streaming.group import GroupStream, StreamGroup
from chunkformer.streaming.stream import StreamError

log = logging.getLogger("chunkformer.serve")

TRY_AGAIN_LATER = 1013  # websocket close code
MAX_BACKLOG_SECONDS = 30  # audio a call may have waiting for the decoder before reads pause


class ProtocolError(ValueError):
    """A message the protocol does not allow; its text goes back to the client."""


@dataclass
class Call:
    """One connection's state. ``inbox`` (PCM pieces) and ``ended`` are written by the event
    loop; ``stream`` is used only by the worker thread."""

    connection: object
    nbest: int = 1
    continuous: bool = False
    sample_rate: int = 16000
    stream: Optional[GroupStream] = None
    inbox: List[bytes] = field(default_factory=list)
    started: bool = False
    ended: bool = False  # the client sent "end"
    gone: bool = False  # the client went away
    done: asyncio.Event = field(default_factory=asyncio.Event)  # speech_end sent
    pending: int = 0  # bytes in inbox
    frames: int = 0  # encoder frames decoded when results were last sent


def parse_start(message: dict, sample_rates: Sequence[int]) -> dict:
    """Options of a ``start`` message → {nbest, continuous, sample_rate}."""
    nbest = message.get("nbest", 1)
    if not isinstance(nbest, int) or isinstance(nbest, bool) or nbest < 1:
        raise ProtocolError("integer ≥ 1 is expected for nbest option")
    continuous = message.get("continuous_decoding", False)
    if not isinstance(continuous, bool):
        raise ProtocolError("boolean true or false is expected for continuous_decoding option")
    rate = message.get("sample_rate", 16000)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in sample_rates:
        raise ProtocolError(f"sample_rate {rate!r} is not supported (use one of "
                            f"{', '.join(map(str, sample_rates))})")
    return {"nbest": nbest, "continuous": continuous, "sample_rate": rate}


def result_message(kind: str, sentence: str, decoded_ms: int,
                   words: Optional[List[dict]] = None, others: Sequence[str] = ()) -> str:
    """A partial_result / final_result message (word times in seconds → milliseconds).
    ``decoded_ms`` (an addition to WeNet's fields, which its clients ignore): the audio the
    decoder has read so far, in ms since the call started, so a client can tell how far
    behind the audio a result is. ``others``: the next best sentences (beam search)."""
    best = {"sentence": sentence}
    if words is not None:
        best["word_pieces"] = [{"word": w["word"], "start": int(round(w["start"] * 1000)),
                                "end": int(round(w["end"] * 1000))} for w in words]
    alternatives = [best] + [{"sentence": other} for other in others]
    return json.dumps({"status": "ok", "type": kind,
                       "nbest": json.dumps(alternatives, ensure_ascii=False),
                       "decoded_ms": decoded_ms}, ensure_ascii=False)


def failed(message: str) -> str:
    return json.dumps({"status": "failed", "message": message}, ensure_ascii=False)


OK_READY = json.dumps({"status": "ok", "type": "server_ready"})
OK_END = json.dumps({"status": "ok", "type": "speech_end"})


class RecognitionServer:
    """The shared model, its stream group and the connections (module docstring).

    Args:
        engine: a :class:`~chunkformer.streaming.group.TorchEngine` or ONNX engine.
        chunk_size, left_context_size: the streaming context (right context 0: exact and
            final one chunk after the audio).
        endpoint_silence: seconds of blank frames that close an utterance.
        max_connections: calls served at once; more are refused.
        sample_rates: rates a call may announce.
        max_batch: chunks per forward at most.
        beam_size, bias: decode every call with prefix beam search of this size and this
            :class:`~chunkformer.decoding.bias.DecodingBias` (hotwords, LM); None: greedy.
    """

    def __init__(self, engine, chunk_size: int = 8, left_context_size: int = 32,
                 endpoint_silence: float = 0.8, max_connections: int = 64,
                 sample_rates: Sequence[int] = (8000, 16000), max_batch: int = 64,
                 beam_size: Optional[int] = None, bias=None):
        self.group = StreamGroup(engine, chunk_size, left_context_size, endpoint_silence,
                                 max_batch)
        self.beam_size, self.bias = beam_size, bias
        self.max_connections = max_connections
        self.sample_rates = tuple(sample_rates)
        self.calls: Dict[int, Call] = {}
        self.connections = 0
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="chunkformer-decode")
        self.wake: Optional[asyncio.Event] = None

    # ------------------------------------------------------------------ connections
    async def handle(self, connection):
        """One websocket connection, start to close."""
        if self.connections >= self.max_connections:
            log.info("refused a connection: %d calls in progress", self.connections)
            await self._refuse(connection, f"server busy: {self.connections} calls in progress "
                                           f"(limit {self.max_connections}); try again later",
                               TRY_AGAIN_LATER)
            return
        self.connections += 1
        call = Call(connection)
        try:
            await self._read(call)
        except ProtocolError as e:
            log.info("connection %s: %s", id(connection), e)
            await self._refuse(connection, str(e))
        except Exception as e:  # the client went away (ConnectionClosed) or worse
            if type(e).__name__ not in ("ConnectionClosedOK", "ConnectionClosedError"):
                log.exception("connection %s failed", id(connection))
        finally:
            self.connections -= 1
            call.gone = not call.done.is_set()
            if id(call) in self.calls and call.gone:
                self.wake.set()  # the worker drops the stream

    async def _read(self, call: Call):
        async for message in call.connection:
            if isinstance(message, str):
                signal = self._signal(message)
                if signal["signal"] == "start":
                    if call.started:
                        raise ProtocolError("start received twice: one call per connection")
                    vars(call).update(parse_start(signal, self.sample_rates))
                    call.started = True
                    self.calls[id(call)] = call
                    await call.connection.send(OK_READY)
                else:  # end
                    if not call.started:
                        raise ProtocolError("end received before start")
                    if not call.done.is_set():
                        call.ended = True
                        self.wake.set()
                        await call.done.wait()
                    return
            else:
                if not call.started:
                    raise ProtocolError("Start signal is expected before binary data")
                if len(message) % 2:
                    raise ProtocolError(f"binary frames must hold whole 16-bit samples, got "
                                        f"{len(message)} bytes")
                if call.done.is_set():  # stopped at an endpoint (continuous_decoding off)
                    return
                call.inbox.append(message)
                call.pending += len(message)
                self.wake.set()
                # a client far ahead of the decoder waits (and TCP pushes back on it)
                while call.pending > MAX_BACKLOG_SECONDS * 2 * call.sample_rate:
                    await asyncio.sleep(0.01)

    @staticmethod
    def _signal(message: str) -> dict:
        try:
            value = json.loads(message)
        except json.JSONDecodeError:
            raise ProtocolError("Wrong protocol: text messages must be JSON objects") from None
        if not isinstance(value, dict):
            raise ProtocolError("Wrong protocol: text messages must be JSON objects")
        if "signal" not in value:
            raise ProtocolError("Wrong message header: no signal")
        if value["signal"] not in ("start", "end"):
            raise ProtocolError(f"Unexpected signal type {value['signal']!r}")
        return value

    async def _refuse(self, connection, message: str, code: int = 1008):
        try:
            await connection.send(failed(message))
            await connection.close(code, message[:120])
        except Exception:  # already closed
            pass

    # ------------------------------------------------------------------ decoding
    async def decode_forever(self):
        """The round loop: hand the worker what arrived, send what it says."""
        self.wake = self.wake or asyncio.Event()
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            work = []
            for call in list(self.calls.values()):
                pieces, call.inbox, call.pending = call.inbox, [], 0
                work.append((call, pieces, call.ended, call.gone))
            try:
                replies = await loop.run_in_executor(self.worker, self._round, work)
            except Exception:  # a bug, not bad input: fail these calls, keep serving
                log.exception("decoding round failed")
                replies = [(call, [failed("internal error while decoding; the call is "
                                          "ended")], True) for call, *_ in work]
                for call, *_ in work:
                    if call.stream is not None:
                        self.group.close(call.stream)
            for call, messages, close in replies:
                for m in messages:
                    try:
                        await call.connection.send(m)
                    except Exception:  # the client went away meanwhile
                        break
                if close:
                    self.calls.pop(id(call), None)
                    call.done.set()
                    if not call.ended and not call.gone:  # stopped at an endpoint: hang up
                        asyncio.ensure_future(call.connection.close())
            if any(c.inbox or c.ended for c in self.calls.values()):
                self.wake.set()

    def _round(self, work):
        """Worker thread: feed the audio, encode all ready chunks, collect the results."""
        replies = []
        for call, pieces, ended, gone in work:
            if gone:
                if call.stream is not None:
                    self.group.close(call.stream)
                replies.append((call, [], True))
                continue
            if call.stream is None:
                call.stream = self.group.open(self.beam_size, self.bias)
            for piece in pieces:
                try:
                    call.stream.accept_waveform(np.frombuffer(piece, "<i2"), call.sample_rate)
                except StreamError as e:  # cannot happen with validated starts; stay alive
                    self.group.close(call.stream)
                    replies.append((call, [failed(str(e))], True))
                    break
        self.group.run()  # one batched forward per chunk step, until no call has a chunk
        closing = {id(c) for c, _, close in replies if close}
        for call, _, ended, gone in work:
            if gone or id(call) in closing:
                continue
            replies.append(self._results(call, ended))
        return replies

    def _results(self, call: Call, ended: bool):
        """Messages for one call after a round, and whether its call is over."""
        stream, messages = call.stream, []
        if ended:
            stream.finish()
        decoded = int(round(stream.seconds_decoded * 1000))
        for final in stream.pop_finals():
            others = [alt["text"] for alt in final.get("nbest", [])[1:call.nbest]]
            messages.append(result_message("final_result", final["text"], decoded,
                                           final["words"], others))
            if not call.continuous and not ended:
                messages.append(OK_END)
                self.group.close(stream)
                return call, messages, True
        if ended:
            if not messages:  # WeNet always answers end with a final result
                messages.append(result_message("final_result", "", decoded, []))
            messages.append(OK_END)
            return call, messages, True
        # as WeNet: a partial result after every step that decoded something
        new_frames, call.frames = len(stream.frame_ids) > call.frames, len(stream.frame_ids)
        text = stream.partial() if new_frames else ""
        if text:
            messages.append(result_message("partial_result", text, decoded))
        return call, messages, False

    # ------------------------------------------------------------------ running
    async def serve(self, host: str, port: int, ready: Optional[asyncio.Event] = None,
                    max_message_bytes: int = 1 << 20):
        """Listen until cancelled. ``ready`` is set once the port is open."""
        from websockets.asyncio.server import serve

        self.wake = asyncio.Event()
        decoder = asyncio.create_task(self.decode_forever())
        try:
            async with serve(self.handle, host, port, max_size=max_message_bytes,
                             compression=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                log.info("listening on ws://%s:%d", host, self.port)
                if ready is not None:
                    ready.set()
                await asyncio.Future()
        finally:
            decoder.cancel()
            self.worker.shutdown(wait=False)
