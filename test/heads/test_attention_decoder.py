"""Attention decoder: released key layout, explicit-attention reference, masking."""
import math

import pytest
import torch

from chunkformer.heads.attention_decoder import (BiTransformerDecoder, TransformerDecoder,
                                                 build_decoder)

V, D = 11, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def small_decoder(**kw):
    torch.manual_seed(0)
    return TransformerDecoder(V, D, attention_heads=2, linear_units=16, num_blocks=2, **kw).eval()


def test_released_keys_load_strict(reference_dir):
    state = torch.load(reference_dir / "model" / "pytorch_model.bin", weights_only=True)
    decoder_state = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    model = TransformerDecoder(256, 96, attention_heads=4, linear_units=256, num_blocks=1)
    torch.testing.assert_close(model.embed[1].pe, decoder_state["embed.1.pe"],
                               atol=1e-5, rtol=0)
    model.load_state_dict(decoder_state, strict=True)


def test_bitransformer_keys():
    model = BiTransformerDecoder(V, D, attention_heads=2, linear_units=16, num_blocks=2,
                                 r_num_blocks=1)
    keys = model.state_dict().keys()
    assert "left_decoder.decoders.1.src_attn.linear_out.bias" in keys
    assert "right_decoder.decoders.0.feed_forward.w_2.weight" in keys
    assert not any(k.startswith("right_decoder.decoders.1.") for k in keys)
    assert "right_decoder.embed.1.pe" in keys


def _attention(att, q_in, kv_in, attend):
    """Textbook multi-head attention with -inf masking, for one sequence."""
    h, dk = att.h, att.d_k
    q = att.linear_q(q_in).view(-1, h, dk).transpose(0, 1)
    k = att.linear_k(kv_in).view(-1, h, dk).transpose(0, 1)
    v = att.linear_v(kv_in).view(-1, h, dk).transpose(0, 1)
    scores = (q @ k.transpose(1, 2) / math.sqrt(dk)).masked_fill(~attend, float("-inf"))
    return att.linear_out((scores.softmax(-1) @ v).transpose(0, 1).reshape(-1, h * dk))


def _reference_logits(model, memory, ys):
    """One unpadded sequence: memory (T, D), ys (U,) → (U, V)."""
    u = ys.numel()
    x = model.embed[0](ys) * math.sqrt(D) + model.embed[1].pe[0, :u]
    causal = torch.ones(u, u, dtype=torch.bool).tril()
    everything = torch.ones(u, memory.size(0), dtype=torch.bool)
    for layer in model.decoders:
        y = layer.norm1(x)
        x = x + _attention(layer.self_attn, y, y, causal)
        x = x + _attention(layer.src_attn, layer.norm2(x), memory, everything)
        x = x + layer.feed_forward(layer.norm3(x))
    return model.output_layer(model.after_norm(x))


@torch.no_grad()
def test_batch_matches_reference_per_sequence():
    model = small_decoder()
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(2, 7, D, generator=g)
    memory_lens = torch.tensor([7, 4])
    ys = torch.randint(0, V, (2, 5), generator=g)
    ys_lens = torch.tensor([5, 3])
    logits, r_logits = model(memory, memory_lens, ys, ys_lens)
    assert logits.shape == (2, 5, V) and r_logits is None
    for b in range(2):
        expected = _reference_logits(model, memory[b, :memory_lens[b]], ys[b, :ys_lens[b]])
        torch.testing.assert_close(logits[b, :ys_lens[b]], expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_causal():
    model = small_decoder()
    memory, lens = torch.randn(1, 6, D), torch.tensor([6])
    ys = torch.tensor([[3, 1, 4, 1, 5]])
    changed = ys.clone()
    changed[0, 3:] = 9
    a, _ = model(memory, lens, ys, torch.tensor([5]))
    b, _ = model(memory, lens, changed, torch.tensor([5]))
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


@torch.no_grad()
def test_bitransformer_right_logits():
    torch.manual_seed(0)
    model = BiTransformerDecoder(V, D, attention_heads=2, linear_units=16, num_blocks=1,
                                 r_num_blocks=1).eval()
    memory, lens = torch.randn(1, 6, D), torch.tensor([6])
    ys, r_ys, ys_lens = torch.tensor([[10, 2, 3]]), torch.tensor([[10, 3, 2]]), torch.tensor([3])
    logits, r_logits = model(memory, lens, ys, ys_lens, r_ys, reverse_weight=0.3)
    torch.testing.assert_close(logits, model.left_decoder(memory, lens, ys, ys_lens)[0])
    torch.testing.assert_close(r_logits, model.right_decoder(memory, lens, r_ys, ys_lens)[0])
    assert model(memory, lens, ys, ys_lens, r_ys, reverse_weight=0.0)[1] is None


def test_build_decoder():
    conf = dict(attention_heads=2, linear_units=16, num_blocks=1)
    assert isinstance(build_decoder("transformer", V, D, conf), TransformerDecoder)
    assert isinstance(build_decoder("bitransformer", V, D, {**conf, "r_num_blocks": 1}),
                      BiTransformerDecoder)
    with pytest.raises(ValueError, match="'rnn'"):
        build_decoder("rnn", V, D, conf)


@pytest.mark.parametrize("option", [{"input_layer": "linear"}, {"use_output_layer": False},
                                    {"concat_after": True}, {"normalize_before": False}])
def test_unsupported_options(option):
    with pytest.raises(ValueError, match=next(iter(option))):
        TransformerDecoder(V, D, num_blocks=1, **option)
