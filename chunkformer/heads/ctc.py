"""CTC head: a linear projection of encoder frames onto the vocabulary (key ``ctc_lo``)."""
import torch
from torch import nn


class CTCHead(nn.Module):
    def __init__(self, vocab_size: int, encoder_output_size: int, blank_id: int = 0):
        super().__init__()
        self.ctc_lo = nn.Linear(encoder_output_size, vocab_size)
        self.blank_id = blank_id

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(…, T, D) encoder output → (…, T, V) log-probabilities (float32 softmax).

        Accepts reduced-precision encoder output (bf16/fp16 autocast) outside autocast too.
        """
        return torch.log_softmax(self.ctc_lo(x.to(self.ctc_lo.weight.dtype)).float(), dim=-1)

    def best_ids(self, x: torch.Tensor, frames_per_slice: int = 2048) -> torch.Tensor:
        """(T, D) → (T,) per-frame argmax ids, computed in slices so that hours of frames never
        hold a (T, V) matrix (argmax of the logits is the argmax of the log-probabilities)."""
        w = self.ctc_lo.weight
        return torch.cat([self.ctc_lo(x[i:i + frames_per_slice].to(w.dtype)).argmax(-1)
                          for i in range(0, max(len(x), 1), frames_per_slice)])

    def loss(self, x: torch.Tensor, x_lens: torch.Tensor, ys: torch.Tensor,
             ys_lens: torch.Tensor) -> torch.Tensor:
        """Per-utterance CTC loss in nats per target token, (B,).

        x (B, T', D) with x_lens (B,); ys (B, U) padded target ids with ys_lens (B,). Dividing
        each utterance's negative log-likelihood by its number of tokens keeps the value
        independent of batch size and transcript length (≈ 0.1–1 for a trained model, ≈ log V
        at random init); infeasible alignments (transcript too long) count as 0, not inf.
        """
        log_probs = self.log_probs(x).transpose(0, 1)  # (T', B, V)
        nll = nn.functional.ctc_loss(log_probs, ys, x_lens, ys_lens, blank=self.blank_id,
                                     reduction="none", zero_infinity=True)
        return nll / ys_lens.clamp(min=1).to(nll.dtype)
