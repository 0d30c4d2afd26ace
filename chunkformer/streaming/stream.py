"""Live recognition of an audio stream fed in pieces of any size.

``stream = model.stream(chunk_size, left_context_size, right_context_size)`` returns a
:class:`SegmentStream` that encodes itself; :class:`~chunkformer.streaming.group.StreamGroup`
makes streams that are encoded together, one chunk each per batched forward (a server's calls).
Both have the :class:`Stream` API: ``stream.accept_waveform(samples, sample_rate)`` takes any number of samples
(int16 values or floats in [-1, 1], any rate; the rate is fixed by the first piece);
``stream.partial()`` is the text of the open utterance so far; ``stream.pop_finals()`` returns the
utterances an endpoint has closed since the last call (a run of ``endpoint_silence`` seconds of
blank frames after speech), each ``{"text", "start", "end", "words"}`` with times in seconds
from the start of the stream; ``stream.finish()`` flushes, closes the last utterance and
returns the :class:`~chunkformer.decoding.transcript.Transcript` of the whole stream.

Everything is computed once and exactly as offline long-form decoding (``endless_decode``,
:mod:`chunkformer.decoding.endless`) computes it, so the final token ids equal it whatever the
piece sizes:

- 16 kHz samples: block j of torchaudio's sinc resampler needs the native samples of blocks
  j - w … j + w; a 16 kHz sample is made once those have arrived (the same windowed
  computation :class:`~chunkformer.data.audio.FbankStream` does on files);
- fbank frame i: once 16 kHz samples [160 i, 160 i + 400) exist;
- encoder: a chunk of C frames is emitted once the look-ahead that makes it exact has arrived:
  ``(r + max(C, r)(N - 1)) · 8`` fbank frames, r = max(R, 7) (each layer's right context is the
  next chunk's output of the layer below, so the look-ahead grows with depth); none with
  R = 0, where no layer looks past its chunk (measured: a chunk's output from audio cut right
  after it equals the whole file's), with the attention and convolution caches carried
  between steps;
- greedy CTC on the emitted frames (per-frame ids kept, so the transcript has word times).

Memory holds only what is still needed: the native and 16 kHz samples of the frames not yet
made, the fbank frames of the next segment, and the caches.
"""
import math
from typing import List, Optional, Tuple

import numpy as np
import torch

from chunkformer.data.audio import SAMPLE_RATE, resample_margin, to_16k
from chunkformer.data.features import SHIFT, WINDOW, compute_fbank
from chunkformer.decoding.search import PrefixBeamSearch
from chunkformer.decoding.transcript import FRAME_SHIFT, Token, Transcript, greedy_tokens
from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling as Subsampling

INT16 = 32768.0


class StreamError(ValueError):
    """A piece the stream cannot take (wrong rate, wrong shape, after finish)."""


class _Features:
    """Native samples in pieces → the fbank frames they make, each frame once."""

    def __init__(self, sample_rate: int, num_mel_bins: int = 80):
        g = math.gcd(sample_rate, SAMPLE_RATE)
        self.rate, self.orig, self.new = sample_rate, sample_rate // g, SAMPLE_RATE // g
        self.margin = 0 if self.orig == self.new else resample_margin(self.orig, self.new)
        self.num_mel_bins = num_mel_bins
        self.native = torch.zeros(0)  # native samples from index native_start on
        self.native_start = self.native_len = 0
        self.wave = torch.zeros(0)  # 16 kHz samples from index wave_start on
        self.wave_start = self.made = 0  # made: 16 kHz samples computed so far
        self.frames = 0  # fbank frames computed so far

    def push(self, samples: torch.Tensor):
        self.native = torch.cat([self.native, samples])
        self.native_len += samples.numel()

    def _final_16k(self, finished: bool) -> int:
        """16 kHz samples that no later native sample can change."""
        if finished:
            return -(-self.new * self.native_len // self.orig)
        if self.orig == self.new:
            return self.native_len
        return max(0, (self.native_len // self.orig - self.margin) * self.new)

    def _resample(self, p: int, q: int) -> torch.Tensor:
        if self.orig == self.new:
            return self.native[p - self.native_start:q - self.native_start]
        s = max(0, (p // self.new - self.margin) * self.orig)
        e = min(self.native_len, (-(-q // self.new) + self.margin) * self.orig)
        piece = self.native[s - self.native_start:e - self.native_start]
        offset = s // self.orig * self.new
        return to_16k(piece, self.rate)[p - offset:q - offset]

    def take(self, finished: bool = False) -> torch.Tensor:
        """The fbank frames that became final since the last call → (n, F)."""
        final = self._final_16k(finished)
        if final > self.made:
            self.wave = torch.cat([self.wave, self._resample(self.made, final)])
            self.made = final
        total = 0 if self.made < WINDOW else 1 + (self.made - WINDOW) // SHIFT
        if total <= self.frames:
            return torch.zeros(0, self.num_mel_bins)
        a = self.frames * SHIFT - self.wave_start
        wave = self.wave[a:a + (total - self.frames - 1) * SHIFT + WINDOW]
        feats = compute_fbank(wave, self.num_mel_bins)
        self.frames = total
        self._trim()
        return feats

    def _trim(self):
        keep16 = self.frames * SHIFT  # the next frame's first sample
        self.wave = self.wave[keep16 - self.wave_start:]
        self.wave_start = keep16
        keep = self.made if self.orig == self.new else \
            max(0, (self.made // self.new - self.margin) * self.orig)
        keep = min(keep, self.native_len)
        self.native = self.native[keep - self.native_start:]
        self.native_start = keep


class Stream:
    """What every live stream does: features, the endpoint rule, partial and final results.

    Subclasses say how encoder frames are made: ``_step`` after each piece, ``_flush`` once the
    input has ended, each calling :meth:`_emit` with the ids of the frames they made.

    Args:
        vocab: the model's vocabulary; blank_id: CTC blank.
        chunk_size, left_context_size, right_context_size: C, L, R in encoder frames (80 ms);
            C > 0.
        lookahead: fbank frames past a chunk that must be in before the chunk is exact.
        endpoint_silence: seconds of blank frames after speech that close an utterance
            (None: only ``finish`` closes it).
    """

    def __init__(self, vocab, blank_id: int, chunk_size: int, left_context_size: int,
                 right_context_size: int, lookahead: int, endpoint_silence: Optional[float]):
        if chunk_size is None or chunk_size <= 0:
            raise StreamError("a stream needs chunk_size > 0 (full context cannot stream)")
        if left_context_size < 0 or right_context_size < 0:
            raise StreamError("context sizes must be ≥ 0")
        self.vocab, self.blank = vocab, blank_id
        self.chunk, self.left, self.right = chunk_size, left_context_size, right_context_size
        self.lookahead = lookahead
        self.features: Optional[_Features] = None
        self.feats = torch.zeros(0, 80)  # fbank frames from global index feats_start on
        self.feats_start = self.available = 0
        self.next_frame = 0  # global fbank frame where the next chunk starts
        self.frame_ids: List[int] = []  # greedy CTC id of every emitted encoder frame
        self.finished = False
        self.endpoint_frames = None if endpoint_silence is None else \
            max(1, round(endpoint_silence / FRAME_SHIFT))
        self.utterance_start = 0  # first emitted frame of the open utterance
        self.last_token = None  # its last non-blank frame so far
        self.scanned = 0  # emitted frames looked at by the endpoint rule
        self.finals: List[dict] = []
        self.search = None  # set by use_search: a search over the frames instead of greedy CTC
        self.pending: List[torch.Tensor] = []  # inputs of emitted frames not yet searched
        self.searched = 0  # frames a lazy search has seen
        self.final_tokens: List[Token] = []  # tokens of the closed utterances (a search)

    @property
    def verbatim(self) -> bool:
        """Texts keep special pieces (transducer searches, as offline)."""
        return getattr(self.search, "verbatim", False)

    def use_search(self, search):
        """Decode with ``search`` instead of greedy CTC (:func:`make_search` picks it): a
        :class:`~chunkformer.decoding.search.PrefixBeamSearch`, with hotwords and/or an LM
        through its bias (fed the frames' CTC log-probabilities when a result is read, the
        same search as offline block by block; endpoints from the greedy CTC ids) or a
        :class:`~chunkformer.transducer.model.TransducerLongSearch` (fed the encoder frames as
        they come; a frame is speech for the endpoint rule iff the search emitted on it).
        Either gives ``hypotheses()`` and ``restart(first_frame)``. Call before the audio."""
        if self.frame_ids:
            raise StreamError("choose the search before the first audio")
        self.search = search

    # ------------------------------------------------------------------ input
    def accept_waveform(self, samples, sample_rate: int):
        """Take one piece: (n,) int16 values, or floats in [-1, 1] (numpy or torch), at
        ``sample_rate`` (the same for the whole stream)."""
        if self.finished:
            raise StreamError("the stream is finished: start a new one")
        a = np.asarray(samples)
        x = torch.from_numpy(a if a.flags.writeable else a.copy())  # (bytes from a socket)
        if x.dim() != 1:
            raise StreamError(f"a piece must be one channel of samples, got shape "
                              f"{tuple(x.shape)}")
        x = x.double() if x.is_floating_point() else x.double() / INT16
        x = (x * INT16).float()  # int16 scale, as load_audio gives
        if self.features is None:
            if self.available:
                raise StreamError("this stream takes features (accept_features), not samples")
            if sample_rate <= 0:
                raise StreamError(f"sample rate {sample_rate} is not positive")
            self.features = _Features(int(sample_rate))
        elif sample_rate != self.features.rate:
            raise StreamError(f"sample rate {sample_rate} differs from the stream's "
                              f"{self.features.rate}")
        self.features.push(x)
        self._take_features(finished=False)
        self._step()

    def accept_features(self, frames: torch.Tensor):
        """Take fbank frames (n, 80) computed elsewhere (a file decoded as a stream), instead
        of samples: a stream takes one or the other."""
        if self.finished:
            raise StreamError("the stream is finished: start a new one")
        if self.features is not None:
            raise StreamError("this stream takes samples (accept_waveform), not features")
        self.feats = torch.cat([self.feats, frames.float().cpu()])
        self.available += frames.size(0)
        self._step()

    def finish(self) -> Transcript:
        """No more audio: encode what is left and return the whole stream's transcript."""
        if not self.finished:
            self.finished = True
            if self.features is not None:
                self._take_features(finished=True)
            self._flush()
            self._endpoint()
            self._close(len(self.frame_ids))
        tokens = self.final_tokens if self.search is not None else \
            greedy_tokens(self.frame_ids, self.blank)
        return Transcript(tokens, self.vocab, frame_ids=self.frame_ids, blank=self.blank,
                          verbatim=self.verbatim)

    def pop_finals(self) -> List[dict]:
        """The utterances closed since the last call, oldest first."""
        finals, self.finals = self.finals, []
        return finals

    def partial(self) -> str:
        """The text of the open utterance so far (its frames are final: later audio only adds
        to it). Only the open utterance is read, so calling this after every piece costs the
        utterance's length, not the stream's (with ``endpoint_silence=None`` the stream is one
        utterance)."""
        if self.search is not None:
            self._advance_search(len(self.frame_ids))
            return self.vocab.ids_to_text(self.search.hypotheses()[0].ids, self.verbatim)
        tokens = greedy_tokens(self.frame_ids[self.utterance_start:], self.blank)
        return Transcript(tokens, self.vocab).text

    @property
    def seconds_decoded(self) -> float:
        """Audio behind the emitted encoder frames, in seconds."""
        return len(self.frame_ids) * FRAME_SHIFT

    # ------------------------------------------------------------------ chunks
    @property
    def chunk_frames(self) -> int:
        """Fbank frames one chunk reads (8C + 7: its own 8C and the front end's overlap)."""
        return self.chunk * Subsampling.stride + Subsampling.receptive_field - Subsampling.stride

    def ready_chunks(self) -> int:
        """Whole chunks whose frames (and look-ahead) are in but not yet encoded."""
        ready = self.available - self.next_frame - self.lookahead - \
            (Subsampling.receptive_field - Subsampling.stride)
        return max(0, ready // (self.chunk * Subsampling.stride))

    def tail_frames(self) -> int:
        """After ``finish``: fbank frames left for a last, shorter chunk (0 if too few)."""
        left = self.available - self.next_frame
        return left if self.finished and left >= Subsampling.receptive_field else 0

    def frames(self, start: int, stop: int) -> torch.Tensor:
        """Fbank frames [start, stop) (global indices; start ≥ the next chunk's first)."""
        return self.feats[start - self.feats_start:stop - self.feats_start]

    def _take_features(self, finished: bool):
        new = self.features.take(finished)
        if new.numel():
            self.feats = torch.cat([self.feats, new])
            self.available += new.size(0)

    def _emit(self, ids: List[int], chunks: Optional[int],
              inputs: Optional[torch.Tensor] = None):
        """Record the ids (and, for a search, its inputs: (n, V) CTC log-probabilities or
        (n, D) encoder frames, as ``search.inputs`` says) of frames made from the next
        ``chunks`` chunks (None: the tail) and drop the fbank frames no later chunk reads.
        An eager search consumes its inputs now and gives the frames' speech markers."""
        if self.search is not None:
            if inputs is None:
                raise StreamError(f"this stream's search needs the frames' {self.search.inputs}")
            if self.search.eager:
                ids = self.search.advance(inputs)
            else:
                self.pending.append(inputs.detach().float().cpu())
        self.frame_ids.extend(ids)
        if chunks is None:
            self.next_frame = self.available
        else:
            self.next_frame += chunks * self.chunk * Subsampling.stride
            drop = self.next_frame - self.feats_start
            self.feats, self.feats_start = self.feats[drop:], self.next_frame
        self._endpoint()

    def _step(self):
        raise NotImplementedError

    def _flush(self):
        raise NotImplementedError

    # ------------------------------------------------------------------ endpoints
    def _endpoint(self):
        """Close an utterance at every run of ``endpoint_frames`` blank frames after a token
        among the frames emitted since the last look."""
        if self.endpoint_frames is None:
            return
        ids, blank = self.frame_ids, self.blank
        for t in range(self.scanned, len(ids)):
            if ids[t] != blank:
                self.last_token = t
            elif self.last_token is not None and t - self.last_token >= self.endpoint_frames:
                self._close(self.last_token + 1, t + 1)
                self.last_token = None
        self.scanned = len(ids)

    def _advance_search(self, stop: int):
        """Search the emitted frames up to ``stop``."""
        if stop <= self.searched or self.search.eager:
            return
        frames = torch.cat(self.pending)
        self.search.advance(frames[:stop - self.searched])
        self.pending = [frames[stop - self.searched:]]
        self.searched = stop

    def _utterance_tokens(self, stop: int, through: int) -> Tuple[List[Token], list]:
        """The open utterance's tokens: greedy over frames [utterance_start, stop), or the
        search's best over the frames up to ``through`` (the rest of the blank run that
        closed it), after which a fresh search starts; and, for the search, its n-best as
        [{"text", "score"}] (score: CTC + bias)."""
        if self.search is None:
            return greedy_tokens(self.frame_ids[self.utterance_start:stop], self.blank,
                                 offset=self.utterance_start), []
        self._advance_search(through)
        hyps = self.search.hypotheses()
        self.search = self.search.restart(through)
        if self.search.eager:  # it has seen frames past ``through``: theirs go on
            hyps = [_before(h, through) for h in hyps]
        tokens = [Token(i, t, t) for i, t in zip(hyps[0].ids, hyps[0].times)]
        self.final_tokens += tokens
        return tokens, [{"text": self.vocab.ids_to_text(h.ids, self.verbatim),
                         "score": round(h.total, 4)}
                        for h in hyps]

    def _close(self, stop: int, through: Optional[int] = None):
        """Emit frames [utterance_start, stop) as one final utterance (if it holds a token);
        ``through`` ≥ stop: the frames looked at to decide it (default ``stop``). A beam
        search's final also lists its ``nbest``."""
        tokens, nbest = self._utterance_tokens(stop, stop if through is None else through)
        if tokens:
            transcript = Transcript(tokens, self.vocab, verbatim=self.verbatim)
            final = {"text": transcript.text,
                     "start": round(tokens[0].first * FRAME_SHIFT, 3),
                     "end": round((tokens[-1].last + 1) * FRAME_SHIFT, 3),
                     "words": transcript.words()}
            if nbest:
                final["nbest"] = nbest
            self.finals.append(final)
        self.utterance_start = stop


def make_search(model, blank: int, mode: Optional[str] = None, beam_size: Optional[int] = None,
                bias=None):
    """The search a live stream of ``model`` decodes with (None: greedy CTC). ``mode`` None:
    the model's greedy mode, or its beam mode when ``beam_size`` or ``bias`` is given
    (transducer models: rnnt_*, others: ctc_*)."""
    from chunkformer.decoding.batch import TRANSDUCER_MODES, check_mode

    transducer = TRANSDUCER_MODES[0] in getattr(model, "modes", ())
    if mode is None:
        beam = beam_size is not None or bias is not None
        mode = ("rnnt_beam" if beam else "rnnt_greedy") if transducer else \
            ("ctc_prefix_beam" if beam else "ctc_greedy")
    try:
        check_mode(model, mode, bias)
    except ValueError as e:
        raise StreamError(str(e)) from None
    if mode == "ctc_greedy":
        return None
    if mode == "ctc_prefix_beam":
        return PrefixBeamSearch(beam_size or 10, blank, bias=bias)
    if mode in TRANSDUCER_MODES:
        return model.long_search(mode, beam_size or 10, bias)
    raise StreamError(f"{mode} cannot decode a live stream (it rescores whole utterances)")


def _before(h, frame: int):
    """A hypothesis cut to its tokens before ``frame``."""
    keep = sum(t < frame for t in h.times)
    return type(h)(h.ids[:keep], h.score, h.times[:keep], h.bias)


class SegmentStream(Stream):
    """A stream that encodes itself, segment by segment, with any (C, L, R); made by
    ``ChunkFormerModel.stream``.

    Args:
        model: a :class:`~chunkformer.model.ChunkFormerModel` in eval mode.
        max_chunks_per_step: a backlog is encoded this many chunks at a time at most.
        (the rest as :class:`Stream`)
    """

    def __init__(self, model, chunk_size: int, left_context_size: int,
                 right_context_size: int, max_chunks_per_step: int = 16,
                 endpoint_silence: Optional[float] = 0.8):
        encoder = model.encoder
        # With R = 0 no layer looks past its chunk (attention and convolution alike: the
        # masked batch never lets the convolution see further right than R), so a chunk is
        # exact as soon as its own frames are in; otherwise the receptive-field bound.
        r = max(right_context_size, encoder.lorder)
        lookahead = 0 if right_context_size == 0 else \
            (r + max(chunk_size, r) * (encoder.num_blocks - 1)) * Subsampling.stride
        super().__init__(model.vocab, model.ctc.blank_id, chunk_size, left_context_size,
                         right_context_size, lookahead, endpoint_silence)
        self.model, self.encoder = model, encoder
        self.max_chunks = max(1, max_chunks_per_step)
        self.cache = None

    @torch.no_grad()
    def _step(self):
        while True:
            chunks = min(self.ready_chunks(), self.max_chunks)
            if chunks <= 0:
                return
            stop = self.next_frame + chunks * self.chunk * Subsampling.stride + \
                Subsampling.receptive_field - Subsampling.stride + self.lookahead
            self._encode(stop, chunks)

    @torch.no_grad()
    def _flush(self):
        self._step()
        if self.tail_frames():
            self._encode(self.available, None)

    def _encode(self, stop: int, chunks: Optional[int]):
        feats = self.frames(self.next_frame, stop).to(self.model.device)
        keep = chunks * self.chunk if chunks is not None else 0
        enc, self.cache = self.encoder.forward_segment(feats, self.chunk, self.left, self.right,
                                                       self.cache, keep)
        if chunks is not None:
            enc = enc[:keep]
        inputs = None
        if self.search is not None:
            inputs = enc if self.search.inputs == "encoder" else self.model.ctc_log_probs(enc)
        ids = [] if self.search is not None and self.search.eager else \
            self.model.ctc.best_ids(enc).tolist()  # an eager search marks the frames itself
        self._emit(ids, chunks, inputs)
