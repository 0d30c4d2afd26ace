"""ChunkFormerModel: encoder + CTC head (+ attention decoder), with the upstream-style API.

    model = ChunkFormerModel.from_pretrained("path/to/chunkformer-ctc-large-vie")
    enc, enc_lens = model.encode(xs, xs_lens, 64, 128, 128)    # fbank in, encoder frames out
    texts = model.batch_decode(["a.wav", "b.wav"])              # masked batch
    segments = model.endless_decode("call.wav")                 # hours of audio, bounded memory

State-dict keys are those of released checkpoints: ``encoder.*``, ``ctc.ctc_lo.*``, ``decoder.*``.
"""
from typing import Iterable, List, Optional

import torch
from torch import nn

from chunkformer import pretrained
from chunkformer.data.audio import ensure_long_enough, load_audio
from chunkformer.data.features import compute_fbank
from chunkformer.heads.attention_decoder import attention_loss


class ChunkFormerModel(nn.Module):
    stat_names = ("loss", "loss_ctc", "loss_att")  # what forward returns, logged by the trainer
    modes = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring")  # the first: validation

    def __init__(self, encoder, ctc, decoder=None, vocab=None, config: Optional[dict] = None,
                 cmvn_stats: Optional[bytes] = None):
        super().__init__()
        self.encoder = encoder
        self.ctc = ctc
        self.decoder = decoder
        self.vocab = vocab
        self.config = config or {}
        self.cmvn_stats = cmvn_stats
        self.sos, self.eos = pretrained.special_ids(self.config, ctc.ctc_lo.out_features)
        loss_conf = self.config.get("model_conf") or {}
        self.ctc_weight = float(loss_conf.get("ctc_weight", 0.3)) if decoder is not None else 1.0
        self.lsm_weight = float(loss_conf.get("lsm_weight", 0.1))
        self.reverse_weight = float(loss_conf.get("reverse_weight", 0.0))
        self.load_report = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, device="cpu",
                        ignore: Iterable[str] = (), cache_dir=None, force_download: bool = False):
        """Load a released-layout folder strictly (see chunkformer.pretrained); eval mode.
        A transducer folder (``model: transducer``) gives a
        :class:`~chunkformer.transducer.model.TransducerModel`.

        ``pretrained_model_name_or_path`` is a folder, or a Hugging Face repo id
        (``khanhld/chunkformer-ctc-large-vie``) already in the local Hub cache (``cache_dir``, else
        ``$HF_HUB_CACHE`` / ``$HF_HOME/hub`` / ``~/.cache/huggingface/hub``): nothing is
        downloaded, so ``force_download=True`` is an error.
        """
        if force_download:
            raise ValueError("force_download: this toolkit never downloads; fetch the folder "
                             "first (e.g. `huggingface-cli download <repo> --local-dir <folder>`)")
        folder = pretrained.resolve_model_dir(pretrained_model_name_or_path, cache_dir)
        parts, report = pretrained.load_folder(folder, ignore)
        if "predictor" in parts and cls is ChunkFormerModel:  # a transducer folder
            from chunkformer.transducer.model import TransducerModel
            cls = TransducerModel
        model = cls(**parts)
        model.load_report = report
        return model.to(device).eval()

    def save_pretrained(self, out_dir):
        """Write config.yaml, pytorch_model.bin, vocab.txt and global_cmvn to ``out_dir``."""
        pretrained.save_folder(self, out_dir)

    @property
    def device(self):
        return self.ctc.ctc_lo.weight.device

    @property
    def untrained_prefixes(self) -> List[str]:
        """Parameters the configured loss never reaches (the trainer freezes them, so DDP does
        not wait for their gradients, and keeps their weights): the decoder when
        ``ctc_weight`` is 1, the right-to-left decoder when ``reverse_weight`` is 0."""
        if self.decoder is None:
            return []
        if self.ctc_weight >= 1.0:
            return ["decoder."]
        if hasattr(self.decoder, "right_decoder") and self.reverse_weight <= 0.0:
            return ["decoder.right_decoder."]
        return []

    def get_encoder(self):
        return self.encoder

    def get_ctc(self):
        return self.ctc

    @property
    def char_dict(self) -> dict:
        """{token id: token} (the upstream attribute)."""
        return dict(enumerate(self.vocab.tokens)) if self.vocab is not None else {}

    def encode(self, xs, xs_lens, chunk_size: Optional[int] = None,
               left_context_size: Optional[int] = None,
               right_context_size: Optional[int] = None):
        """(B, T, 80) fbank + (B,) lengths → (B, T', D) encoder output + (B,) lengths.

        ``chunk_size`` 0, -1 or None = full context; otherwise chunked attention with the given
        left/right context (subsampled frames; None = 0). Batch-invariant: padding never
        changes a result.
        """
        return self.encoder(xs, xs_lens, chunk_size, left_context_size or 0,
                            right_context_size or 0)

    def _load_audio_and_extract_features(self, audio_path):
        """Upstream helper: path → ((T, 80) fbank on the model's device, T)."""
        feats = self.features(audio_path).to(self.device)
        return feats, feats.size(0)

    def forward(self, feats, feats_lens, targets, target_lens, chunk_size: Optional[int] = 0,
                left_context_size: int = 0, right_context_size: int = 0) -> dict:
        """Training loss on a padded batch, encoded as a masked batch with the given context.

        Args:
            feats (B, T, 80), feats_lens (B,); targets (B, U) padded ids, target_lens (B,).
        Returns:
            {"loss", "loss_ctc", "loss_att" (None without decoder): batch means of
            per-utterance losses in nats per token; "weight": B}. The hybrid loss is
            ``ctc_weight · ctc + (1 - ctc_weight) · att`` per utterance, then averaged, so the
            batch loss equals the mean of the utterances' losses alone and does not depend on
            batch size or padding.
        """
        enc, enc_lens = self.encoder(feats, feats_lens, chunk_size, left_context_size,
                                     right_context_size)
        loss_ctc = self.ctc.loss(enc, enc_lens, targets, target_lens)
        loss, loss_att = loss_ctc, None
        if self.decoder is not None and self.ctc_weight < 1.0:
            loss_att = attention_loss(self.decoder, enc, enc_lens, targets, target_lens,
                                      self.sos, self.eos, self.lsm_weight, self.reverse_weight)
            loss = self.ctc_weight * loss_ctc + (1.0 - self.ctc_weight) * loss_att
        return {"loss": loss.mean(), "loss_ctc": loss_ctc.mean().detach(),
                "loss_att": None if loss_att is None else loss_att.mean().detach(),
                "weight": feats.size(0)}

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """(…, T', D) encoder output → (…, T', V) CTC log-probabilities."""
        return self.ctc.log_probs(enc)

    def features(self, audio, sample_rate: Optional[int] = None, start: Optional[float] = None,
                 end: Optional[float] = None, channel: Optional[int] = None) -> torch.Tensor:
        """Path or waveform → (T, 80) fbank exactly as the released models expect (spec §5).

        Raises AudioError for unreadable audio or audio too short for one encoder frame.
        """
        return model_features(self.config, audio, sample_rate, start, end, channel)

    def batch_decode(self, audio_paths: List, chunk_size: Optional[int] = 64,
                     left_context_size: Optional[int] = 128,
                     right_context_size: Optional[int] = 128, total_batch_duration: float = 1800,
                     mode: Optional[str] = None, beam_size: int = 10,
                     return_timestamps: bool = False, sample_rate: Optional[int] = None,
                     ctc_weight: float = 0.5, reverse_weight: float = 0.0, bias=None):
        """Decode several recordings (paths or waveforms) in masked batches of at most
        ``total_batch_duration`` seconds. Returns texts, or result dicts with word timings.
        ``mode`` None: ``ctc_greedy`` (``rnnt_greedy`` for a transducer, as upstream).
        Context sizes of None mean the upstream defaults 64 / 128 / 128; ``ctc_weight`` and
        ``reverse_weight`` weigh ``attention_rescoring``; ``bias`` (:meth:`decoding_bias`)
        adds hotwords and a language model to the beam modes."""
        from chunkformer.decoding.batch import decode_audios
        results = decode_audios(self, audio_paths, *upstream_context(chunk_size,
                                left_context_size, right_context_size),
                                total_batch_duration, mode, beam_size, sample_rate, ctc_weight,
                                reverse_weight, bias)
        return [r.as_dict() if return_timestamps else r.text for r in results]

    def decoding_bias(self, hotwords=None, lm=None, lm_weight: float = 0.5,
                      word_bonus: float = 0.0):
        """Hotwords and/or a word LM for the beam modes and streams of this model.

        Args:
            hotwords: a hotwords file (one phrase a line, optional ``<TAB>boost``) or a list
                of phrases / (phrase, boost) pairs, written as users write them.
            lm: an ARPA file (``.arpa`` or ``.arpa.gz``) or an :class:`~chunkformer.lm.arpa.NgramLM`.
            lm_weight, word_bonus: fusion weights (``python -m chunkformer.bin.tune_decoding``
                finds them on a dev set).
        Returns:
            a :class:`~chunkformer.decoding.bias.DecodingBias`, to pass as ``bias=``.
        """
        from chunkformer.decoding.bias import make_bias
        return make_bias(self.vocab, hotwords, lm, lm_weight, word_bonus)

    def stream(self, chunk_size: int = 8, left_context_size: int = 32,
               right_context_size: int = 0, beam_size: Optional[int] = None, bias=None,
               mode: Optional[str] = None, **kwargs):
        """A live :class:`~chunkformer.streaming.stream.SegmentStream` on this model: feed it audio
        in pieces (``accept_waveform``), read ``partial()``, end with ``finish()``; its final
        token ids equal ``endless_decode`` with the same contexts and mode. ``mode`` None:
        greedy (CTC, or the transducer's), a beam search when ``beam_size`` and/or ``bias``
        (:meth:`decoding_bias`: hotwords, LM) is given."""
        from chunkformer.streaming.stream import SegmentStream, make_search

        stream = SegmentStream(self, chunk_size, left_context_size, right_context_size,
                               **kwargs)
        search = make_search(self, self.ctc.blank_id, mode, beam_size, bias)
        if search is not None:
            stream.use_search(search)
        return stream

    def endless_decode(self, audio_path, chunk_size: Optional[int] = 64,
                       left_context_size: Optional[int] = 128,
                       right_context_size: Optional[int] = 128, total_batch_duration: float = 1800,
                       return_timestamps: bool = True, max_silence_duration: float = 0.5,
                       mode: Optional[str] = None, beam_size: int = 10,
                       sample_rate: Optional[int] = None, ctc_weight: float = 0.5,
                       reverse_weight: float = 0.0, bias=None):
        """Decode one recording of any length chunk by chunk with attention/conv caches.

        Returns segments ``[{"decode", "start", "end", "words"}]`` split at silences of
        ``max_silence_duration`` (times ``HH:MM:SS:mmm``), or the text when
        ``return_timestamps`` is False. ``audio_path`` may also be a waveform; context sizes of
        None mean 64 / 128 / 128; ``bias`` as in :meth:`batch_decode`.
        """
        from chunkformer.decoding.endless import decode_long
        result = decode_long(self, audio_path, *upstream_context(chunk_size, left_context_size,
                             right_context_size), total_batch_duration, mode, beam_size,
                             sample_rate, ctc_weight, reverse_weight, bias=bias)
        if not return_timestamps:
            return result.text
        return result.segments(max_silence_duration)


def upstream_context(chunk_size, left_context_size, right_context_size):
    """The upstream decoders' reading of None context sizes: 64 / 128 / 128."""
    return (64 if chunk_size is None else chunk_size,
            128 if left_context_size is None else left_context_size,
            128 if right_context_size is None else right_context_size)


def model_features(config: dict, audio, sample_rate: Optional[int] = None,
                   start: Optional[float] = None, end: Optional[float] = None,
                   channel: Optional[int] = None) -> torch.Tensor:
    """Path or waveform (``channel``: only that one, else their mean) → (T, 80) fbank with a
    model config's ``fbank_conf`` (spec §5); every model type computes its input here."""
    fbank = config.get("fbank_conf") or {}
    wave = ensure_long_enough(load_audio(audio, sample_rate, start, end, channel))
    return compute_fbank(wave, num_mel_bins=int(fbank.get("num_mel_bins", 80)),
                         frame_length=float(fbank.get("frame_length", 25)),
                         frame_shift=float(fbank.get("frame_shift", 10)))
