"""TransducerModel: the ChunkFormer encoder with an RNN-T predictor and joint, plus the CTC
head and attention decoder released transducer folders carry (spec/rnnt.md).

Everything a :class:`~chunkformer.model.ChunkFormerModel` does it does too (its CTC head
decodes with the CTC modes); the transducer adds the modes ``rnnt_greedy`` and ``rnnt_beam``
and the hybrid loss ``w_rnnt · rnnt + w_ctc · ctc + w_att · att`` (``model_conf``
``transducer_weight``, ``ctc_weight``, ``attention_weight``, which must sum to 1).
"""
from dataclasses import replace
from typing import List, Optional

import torch

from chunkformer.config import ConfigError
from chunkformer.decoding.batch import TRANSDUCER_MODES
from chunkformer.decoding.transcript import Token, Transcript
from chunkformer.heads.attention_decoder import attention_loss
from chunkformer.model import ChunkFormerModel
from chunkformer.transducer.loss import rnnt_loss
from chunkformer.decoding.search import Hypothesis
from chunkformer.transducer.search import MAX_SYMBOLS, beam_search, greedy_search



class TransducerModel(ChunkFormerModel):
    stat_names = ("loss", "loss_rnnt", "loss_ctc", "loss_att")
    modes = ("rnnt_greedy", "rnnt_beam") + ChunkFormerModel.modes  # the first: validation

    def __init__(self, encoder, ctc, predictor, joint, decoder=None, vocab=None,
                 config: Optional[dict] = None, cmvn_stats: Optional[bytes] = None):
        super().__init__(encoder, ctc, decoder, vocab, config, cmvn_stats)
        self.predictor, self.joint = predictor, joint
        conf = self.config.get("model_conf") or {}
        self.weights = {"rnnt": float(conf.get("transducer_weight", 1.0)),
                        "ctc": float(conf.get("ctc_weight", 0.0)),
                        "att": float(conf.get("attention_weight", 0.0))}
        if abs(sum(self.weights.values()) - 1.0) > 1e-6:
            raise ConfigError("model_conf: transducer_weight + ctc_weight + attention_weight "
                              f"must be 1, got {self.weights}")
        if self.weights["att"] > 0 and decoder is None:
            raise ConfigError("model_conf.attention_weight > 0 needs an attention decoder")
        self.blank = predictor.blank
        self._max_symbols = MAX_SYMBOLS
        self.time_chunk: Optional[int] = None  # frames per joint evaluation in the loss

    @property
    def max_symbols(self) -> int:
        """Symbols one encoder frame may emit at most in the searches (the reference's 64 by
        default; a trained model rarely needs more than a few per 80 ms frame, and a lower cap
        bounds a runaway repetition loop on one frame)."""
        return self._max_symbols

    @max_symbols.setter
    def max_symbols(self, n: int):
        if int(n) != n or n < 1:
            raise ValueError(f"max_symbols must be a whole number >= 1, got {n}")
        self._max_symbols = int(n)

    @property
    def untrained_prefixes(self) -> List[str]:
        """Heads whose loss weight is 0 (frozen by the trainer, weights kept)."""
        out = []
        if self.weights["ctc"] <= 0.0:
            out.append("ctc.")
        if self.decoder is not None:
            if self.weights["att"] <= 0.0:
                out.append("decoder.")
            elif hasattr(self.decoder, "right_decoder") and self.reverse_weight <= 0.0:
                out.append("decoder.right_decoder.")
        return out

    def forward(self, feats, feats_lens, targets, target_lens, chunk_size: Optional[int] = 0,
                left_context_size: int = 0, right_context_size: int = 0) -> dict:
        """Hybrid training loss on a padded batch encoded as a masked batch.

        Every term is per utterance in nats per target token (the RNN-T negative
        log-likelihood divided by the transcript's length, as the CTC and attention terms
        are), weighted, then averaged over the batch: the batch loss is the mean of the
        utterances' losses alone, whatever the batch size or padding.
        """
        enc, enc_lens = self.encoder(feats, feats_lens, chunk_size, left_context_size,
                                     right_context_size)
        pred = self.predictor(targets, target_lens)
        tokens = target_lens.clamp(min=1).to(enc.dtype)
        loss_rnnt = rnnt_loss(self.joint, enc, enc_lens, pred, targets, target_lens,
                              self.blank, self.time_chunk) / tokens.float()
        loss = self.weights["rnnt"] * loss_rnnt
        loss_ctc = loss_att = None
        if self.weights["ctc"] > 0:
            loss_ctc = self.ctc.loss(enc, enc_lens, targets, target_lens)
            loss = loss + self.weights["ctc"] * loss_ctc
        if self.weights["att"] > 0:
            loss_att = attention_loss(self.decoder, enc, enc_lens, targets, target_lens,
                                      self.sos, self.eos, self.lsm_weight, self.reverse_weight)
            loss = loss + self.weights["att"] * loss_att
        detach = (lambda x: None if x is None else x.mean().detach())  # noqa: E731
        return {"loss": loss.mean(), "loss_rnnt": detach(loss_rnnt),
                "loss_ctc": detach(loss_ctc), "loss_att": detach(loss_att),
                "weight": feats.size(0)}

    # ------------------------------------------------------------------ decoding
    def transducer_transcripts(self, encs: List[torch.Tensor], mode: str, beam_size: int = 10,
                               bias=None) -> List[Transcript]:
        """Encoder outputs [(T'_i, D)] → transcripts; greedy search runs batched over the
        utterances, beam search one utterance at a time (its hypotheses batched)."""
        if mode == "rnnt_beam":
            out = []
            for enc in encs:
                search = TransducerLongSearch(self, mode, beam_size, bias)
                search.add(enc)
                out.append(search.finish())
            return out
        lens = torch.tensor([e.size(0) for e in encs], device=self.device)
        padded = torch.nn.utils.rnn.pad_sequence(encs, batch_first=True)
        emitted, _ = greedy_search(self.predictor, self.joint, padded, lens, self.max_symbols)
        return [transducer_transcript(self, out, int(n)) for out, n in zip(emitted, lens)]

    def long_search(self, mode: str, beam_size: int = 10,
                    bias=None) -> "TransducerLongSearch":
        return TransducerLongSearch(self, mode, beam_size, bias)


def transducer_transcript(model, emitted, num_frames: int, nbest=()) -> Transcript:
    """(token, frame) pairs → a Transcript: token times are their frames, a frame counts as
    speech for segmentation iff it emitted a symbol, and the text keeps special pieces."""
    markers = [model.blank] * num_frames
    for token, frame in emitted:
        markers[frame] = token
    return Transcript([Token(i, t, t) for i, t in emitted], model.vocab, frame_ids=markers,
                      blank=model.blank, verbatim=True, nbest=list(nbest))


class TransducerLongSearch:
    """The transducer search over a recording's encoder frames given block by block (long-form
    segments, live chunks): the predictor state (greedy) or the beam is carried from block to
    block, so the result is the search over all the frames at once (spec/rnnt.md §5).

    ``rnnt_beam`` with ``bias`` (hotwords, LM: a DecodingBias) ranks hypotheses by their
    log-probability plus the bias; the transcript's ``nbest`` lists the beam. Live streams
    use it through ``advance`` / ``hypotheses`` / ``restart``
    (:meth:`chunkformer.streaming.stream.Stream.use_search`)."""

    inputs = "encoder"  # a live stream feeds it encoder frames
    eager = True  # as they come: its emissions mark the speech frames for endpoints
    verbatim = True  # texts keep special pieces, as the offline transducer text does

    def __init__(self, model: TransducerModel, mode: str, beam_size: int = 10, bias=None):
        if mode not in TRANSDUCER_MODES:
            raise ValueError(f"{mode} is not a transducer search")
        if bias is not None and mode != "rnnt_beam":
            raise ValueError("hotwords and a language model need rnnt_beam, not rnnt_greedy")
        self.model, self.mode, self.beam_size, self.bias = model, mode, beam_size, bias
        self.emitted, self.frames = [], 0
        self.carry = None  # GreedyState, or the beam

    def add(self, enc: torch.Tensor):
        """Append (n, D) encoder frames."""
        self.advance(enc)

    def advance(self, enc: torch.Tensor) -> List[int]:
        """Search (n, D) more frames → for each, the last token emitted on it (by greedy
        search, or on the best beam hypothesis) or blank."""
        m, start = self.model, self.frames
        if self.mode == "rnnt_beam":
            self.carry = beam_search(m.predictor, m.joint, enc, self.beam_size, m.max_symbols,
                                     self.carry, self.bias, start)
            best = self.carry[0]
            new = [(i, t) for i, t in zip(best.ids, best.times) if t >= start]
        else:
            out, self.carry = greedy_search(m.predictor, m.joint, enc.unsqueeze(0),
                                            torch.tensor([enc.size(0)], device=enc.device),
                                            m.max_symbols, self.carry)
            new = [(token, frame + start) for token, frame in out[0]]
            self.emitted += new
        self.frames += enc.size(0)
        markers = [m.blank] * enc.size(0)
        for token, frame in new:
            markers[frame - start] = token
        return markers

    def hypotheses(self) -> List[Hypothesis]:
        """Best first (greedy: the one labelling); the bias's closing term added."""
        if self.mode == "rnnt_greedy":
            return [Hypothesis(tuple(i for i, _ in self.emitted), 0.0,
                               tuple(t for _, t in self.emitted))]
        hyps = []
        for h in self.carry or []:
            end = self.bias.finish(h.bias_state) if self.bias is not None else 0.0
            hyps.append(Hypothesis(h.ids, h.score, h.times, h.bonus + end))
        return sorted(hyps, key=lambda h: -h.total) or [Hypothesis((), 0.0, ())]

    def restart(self, first_frame: int) -> "TransducerLongSearch":
        """The search going on with what it emitted from ``first_frame`` on (a live stream's
        endpoint closed the rest): greedy keeps its predictor state, beam search its best
        hypothesis (its predictor state; labelling cut, score from 0)."""
        nxt = TransducerLongSearch(self.model, self.mode, self.beam_size, self.bias)
        nxt.frames = self.frames
        if self.mode == "rnnt_greedy":
            nxt.carry = self.carry
            nxt.emitted = [(i, t) for i, t in self.emitted if t >= first_frame]
        elif self.carry:
            best = self.carry[0]
            keep = [k for k, t in enumerate(best.times) if t >= first_frame]
            nxt.carry = [replace(best, ids=tuple(best.ids[k] for k in keep),
                                 times=tuple(best.times[k] for k in keep), score=0.0)]
        return nxt

    def finish(self) -> Transcript:
        ranked = [(h.total, h) for h in self.hypotheses()]
        best = ranked[0][1]
        return transducer_transcript(self.model, list(zip(best.ids, best.times)), self.frames,
                                     ranked if self.mode == "rnnt_beam" else ())
