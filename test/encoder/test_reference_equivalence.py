"""Our encoder vs the reference code's outputs on the same weights (fixtures/reference-small)."""
import numpy as np
import pytest
import torch

from chunkformer.encoder.subsampling import DepthwiseStridingSubsampling, subsampled_length

TOL = 1e-4  # README of the fixture: ~1e-5, allow 1e-4


def _feats(reference):
    return [torch.from_numpy(reference[f"fbank_{i}"]) for i in range(3)]


def _close(a, b, tol=TOL):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= tol


@torch.no_grad()
def test_full_context_alone_matches_reference(ref_model, reference):
    for i, f in enumerate(_feats(reference)):
        enc, lens = ref_model.encode(f[None], torch.tensor([len(f)]), 0, 0, 0)
        _close(enc[0], reference[f"full_enc_{i}"])
        _close(ref_model.ctc_log_probs(enc[0]), reference[f"full_logp_{i}"])
        assert lens.tolist() == [len(reference[f"full_ids_{i}"])]


@torch.no_grad()
@pytest.mark.parametrize("chunk_size", [0, -1, None])
def test_full_context_is_padding_invariant(ref_model, reference, chunk_size):
    """Unlike the reference (spec §8.1), padding never leaks into an utterance's output."""
    feats = _feats(reference)
    xs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    xs = torch.cat([xs, torch.randn(3, 100, 80) * 5], 1)  # extra garbage padding
    enc, lens = ref_model.encode(xs, torch.tensor([len(f) for f in feats]), chunk_size, 0, 0)
    assert lens.tolist() == reference["fullpad_lens"].tolist()
    for i in range(3):
        _close(enc[i, :lens[i]], reference[f"full_enc_{i}"])
        assert torch.all(enc[i, lens[i]:] == 0)
    # the reference's padded batch differs from alone (its leak); ours does not
    assert np.abs(reference["fullpad_enc"][1, :lens[1]] - reference["full_enc_1"]).max() > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("tag,ctx", [("mb", (64, 128, 128)), ("mb2", (16, 24, 4))])
def test_masked_batch_matches_reference(ref_model, reference, tag, ctx):
    encs = ref_model.encoder.forward_list(_feats(reference), *ctx)
    for i, enc in enumerate(encs):
        _close(enc, reference[f"{tag}_enc_{i}"])
        logp = ref_model.ctc_log_probs(enc)
        _close(logp, reference[f"{tag}_logp_{i}"])
        assert (logp.argmax(-1).numpy() != reference[f"{tag}_ids_{i}"]).sum() <= 1  # near-ties only


@torch.no_grad()
@pytest.mark.parametrize("ctx", [(64, 128, 128), (16, 24, 4), (8, 0, 0), (4, 13, 9)])
def test_masked_batch_is_batch_invariant(ref_model, ctx):
    torch.manual_seed(0)
    lens = [15, 40, 700, 333, 2000, 16]  # under one chunk … many chunks
    feats = [torch.randn(n, 80) * 3 + 10 for n in lens]
    batched = ref_model.encoder.forward_list(feats, *ctx)
    order = [3, 0, 5, 2, 1, 4]  # another batch composition
    shuffled = ref_model.encoder.forward_list([feats[i] for i in order], *ctx)
    for j, i in enumerate(order):
        alone = ref_model.encoder.forward_list([feats[i]], *ctx)[0]
        assert alone.shape[0] == subsampled_length(lens[i])
        assert (batched[i] - alone).abs().max() <= 1e-5
        assert (shuffled[j] - alone).abs().max() <= 1e-5


@torch.no_grad()
def test_padded_encode_equals_masked_batch(ref_model):
    """encode() on a padded batch is the masked batch: appended padding changes nothing."""
    torch.manual_seed(1)
    feats = [torch.randn(n, 80) for n in (900, 100, 431)]
    xs = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    xs_long = torch.cat([xs, torch.full((3, 77, 80), 9.0)], 1)
    lens = torch.tensor([len(f) for f in feats])
    a, la = ref_model.encode(xs, lens, 16, 32, 8)
    b, lb = ref_model.encode(xs_long, lens, 16, 32, 8)
    ref_list = ref_model.encoder.forward_list(feats, 16, 32, 8)
    assert torch.equal(la, lb)
    for i in range(3):
        assert (a[i, :la[i]] - ref_list[i]).abs().max() <= 1e-5
        assert (b[i, :lb[i]] - ref_list[i]).abs().max() <= 1e-5


@torch.no_grad()
def test_whole_window_chunking_equals_full_context(ref_model, reference):
    """Spec §8.3: when every chunk window covers the utterance the chunked result is full
    context (utterances 0 and 1 are shorter than (L + C) × 80 ms)."""
    encs = ref_model.encoder.forward_list(_feats(reference)[:2], 64, 128, 128)
    for i in range(2):
        _close(encs[i], reference[f"full_enc_{i}"])


def test_subsampled_length_algebra():
    front = DepthwiseStridingSubsampling(80, 8)
    for t in range(1, 200):
        expected = max(0, 1 + (t - 15) // 8) if t >= 7 else 0
        assert max(0, subsampled_length(t)) == expected
        if t >= 15:
            assert front(torch.zeros(1, t, 80)).shape[1] == expected
