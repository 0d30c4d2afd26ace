"""The one training loop for every model: ASR (``ChunkFormerModel``), self-supervised
pretraining (``ssl.bestrq.BestRQModel``) and task heads. A model takes the batch as
``model(feats, feats_lens, targets, target_lens, C, L, R)`` and returns a dict with ``loss`` and
the scalars named in its ``stat_names`` (averaged over micro-batches and ranks, logged).

Per optimizer step: for each of ``accum_steps`` micro-batches, an autocast forward in the
context (C, L, R) drawn for this step, the loss divided by the accumulation count, backward with
DDP gradient sync only on the last micro-batch. Then unscale, clip (the norm is logged), skip
the step when the norm is not finite (counted; ``nan_limit`` skips in a row stop the run with a
checkpoint), optimizer step, scheduler step. Validation decodes the dev set with the same
function as ``recognize`` and the API (when there is a tokenizer; a model without transcripts
reports its statistics only), with a fixed random state so its masks are the same every time.
Checkpoints are atomic and hold every piece of state (each rank's RNGs, CPU and CUDA), so
a run killed at any moment resumes exactly; SIGTERM or SIGUSR1 (what SLURM sends before a time
limit) asks for a checkpoint at the next step boundary and a clean stop (:class:`Preempted`).

Under DDP every rank runs the same collectives in the same order whatever its data: a
micro-batch whose items were all bad still goes through the DDP wrapper (a zero loss on every
trained parameter), parameters that the configured loss never reaches are frozen
(``untrained_prefixes``), and the ranks' weights are compared at every checkpoint.
"""
import contextlib
import json
import logging
import math
import os
import random
import resource
import signal
import threading
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from chunkformer.config import ConfigError
from chunkformer.data.dataset import SKIP_KINDS
from chunkformer.data.manifest import display_key
from chunkformer.data.text import normalize_text
from chunkformer.decoding.batch import decode_features
from chunkformer.decoding.metrics import error_counts
from chunkformer.training.checkpoint import (CheckpointDir, rank_seed, rng_state,
                                             seed_everything, set_rng_state)
from chunkformer.training.distributed import (DistEnv, all_reduce_sum, check_in_sync,
                                              gather_to_main)
from chunkformer.training.optim import build_optimizer, build_scheduler
from chunkformer.training.optim import freeze as freeze_parameters

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resident_mib() -> float:
    """This process's resident memory now (MiB; Linux ``/proc``, else the peak so far), logged so
    that allocator growth over a long run shows up in the train log and tensorboard."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _labels(batch) -> Dict:
    """The keyword arguments that hand a batch's class labels to models with task heads."""
    return {"labels": batch.labels} if getattr(batch, "labels", None) else {}


class NonFiniteLoss(RuntimeError):
    """Too many non-finite gradient norms in a row."""


class DataError(RuntimeError):
    """The data left nothing (or too little) to train or validate on."""


# What to look at first, per kind of skipped row.
SKIP_HINTS = {
    "unknown characters": "`python -m chunkformer.bin.build_vocab --kind released --model_dir "
                          "<model folder> --data <list> --output_dir <dir>` lists what the "
                          "vocabulary cannot encode",
    "unreadable audio": "check the audio paths (data.audio_root) and files",
    "missing features": "recompute the feats.scp with compute_fbank",
    "transcript too long": "check that transcripts belong to their audio",
}
FIRST_BATCHES = 3  # an epoch whose first batches are all bad stops here


def skip_summary(counts: Sequence[float]) -> str:
    """Per-kind counts (SKIP_KINDS order) → ``unknown characters 50, too short 2``."""
    ranked = sorted(((int(n), kind) for n, kind in zip(counts, SKIP_KINDS) if n), reverse=True)
    return ", ".join(f"{kind} {n}" for n, kind in ranked)


def skip_hints(counts: Sequence[float]) -> str:
    return "".join(f"; {SKIP_HINTS[kind]}" for n, kind in zip(counts, SKIP_KINDS)
                   if n and kind in SKIP_HINTS)


class Preempted(RuntimeError):
    """A stop signal arrived; the checkpoint of the step where training stopped is written."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class LossOf(torch.nn.Module):
    """What DDP wraps: ``model(*batch)``, or for ``None`` (a micro-batch whose items were all
    bad) a zero loss that reaches every trained parameter, so that this rank still runs DDP's
    forward (buffer broadcast) and gradient all-reduce in step with the others."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        if args[0] is None:
            return {"loss": sum(p.sum() * 0.0 for p in self.model.parameters()
                                if p.requires_grad)}
        return self.model(*args, **kwargs)


class Trainer:
    """Args (the YAML ``train:`` and ``optim:`` sections, as keywords):
        max_steps: optimizer steps of the whole run (the schedule spans them).
        accum_steps, grad_clip, amp ("none" | "bf16" | "fp16"), seed.
        chunk_sizes, left_context_sizes, right_context_sizes: each step draws C, L, R from
            these lists (C ≤ 0: full context); the train CLI takes them from the model's
            ``encoder_conf.dynamic_*_sizes`` when the config names them there.
        streaming: draw R among the right contexts below C only (``encoder_conf.streaming``).
        full_context_steps: the first steps train in full context before the draws start: a
            small model learning CTC from scratch in chunks of a few frames stays on the blank
            plateau far longer (default recipe: no progress in 700 steps, full context: 500).
        val_context: (C, L, R) of the dev loss and of the dev ``cer`` / ``wer``.
        val_contexts: more deployment contexts to decode the dev set in, by name (e.g.
            ``{full: [0, 0, 0], chunk64: [64, 128, 128], low: [16, 16, 8]}``): each logs
            ``cer_<name>`` / ``wer_<name>``, so one model is checked offline, chunked and at
            low latency.
        best_metric: the dev metric (lower is better) that chooses the ``keep_best``
            checkpoints: ``loss``, ``cer``, ``wer`` or ``cer_<name>`` / ``wer_<name>``.
        log_every, val_every, save_every: in optimizer steps; keep_last / keep_best
            checkpoints; nan_limit.
        key_mode: how utterance ids and audio paths appear in ``skipped.tsv`` ("plain",
            "hash" or "omit": call ids may carry phone numbers).
        max_skipped_fraction: training stops (:class:`DataError`, naming the main reasons)
            when more than this share of an epoch's items were skipped (judged from 100
            items on, and at the epoch's end), or when its first batches were all bad.
        freeze: parameter-name prefixes that do not train: for the whole run
            (``freeze_steps`` 0: left out of the optimizer), or for the first ``freeze_steps``
            steps only (learning rate 0 until then, e.g. a pretrained encoder under a new head).
        optim: lr, weight_decay, betas, eps, layer_decay, warmup_steps, scheduler, min_lr_ratio.
    """

    def __init__(self, model, tokenizer, train_data, dev_data, exp_dir, env: DistEnv, *,
                 max_steps: int, accum_steps: int = 1, grad_clip: float = 5.0,
                 amp: str = "none", seed: int = 0, chunk_sizes: Sequence[int] = (-1,),
                 left_context_sizes: Sequence[int] = (0,),
                 right_context_sizes: Sequence[int] = (0,), streaming: bool = False,
                 full_context_steps: int = 0, val_context: Sequence[int] = (0, 0, 0),
                 val_contexts: Optional[Dict[str, Sequence[int]]] = None,
                 best_metric: str = "loss", log_every: int = 10,
                 val_every: int = 500, save_every: int = 500, keep_last: int = 5,
                 keep_best: int = 5, nan_limit: int = 10, key_mode: str = "plain",
                 max_skipped_fraction: float = 0.5,
                 freeze: Sequence[str] = (), freeze_steps: int = 0,
                 optim: Optional[Dict] = None):
        optim = dict(optim or {})
        self.model, self.tokenizer, self.env = model, tokenizer, env
        self.train_data, self.dev_data = train_data, dev_data
        self.exp_dir = Path(exp_dir)
        self.max_steps, self.accum_steps, self.grad_clip = max_steps, accum_steps, grad_clip
        self.amp = AMP_DTYPES[amp]
        self.seed = seed
        self.contexts = (list(chunk_sizes), list(left_context_sizes), list(right_context_sizes))
        self.streaming = bool(streaming)
        self.full_context_steps = full_context_steps
        self.val_context = tuple(val_context)
        self.decode_contexts = {"": self.val_context, **{
            f"_{name}": tuple(ctx) for name, ctx in (val_contexts or {}).items()}}
        known = ["loss"] + [f"{m}{suffix}" for suffix in self.decode_contexts
                            for m in ("cer", "wer")]
        if best_metric not in known:
            raise ConfigError(f"train.best_metric {best_metric!r} is not one of "
                              f"{', '.join(known)}")
        self.log_every, self.val_every, self.save_every = log_every, val_every, save_every
        self.nan_limit = nan_limit
        display_key("", key_mode)  # an unknown mode fails here, not at the first bad row
        self.key_mode, self.skipped = key_mode, []  # rows this rank left out, not yet written
        self.max_skipped_fraction = max_skipped_fraction
        self.epoch_items = [0.0] * (1 + len(SKIP_KINDS))  # all ranks: items, skipped by kind
        self.schedule = dict(warmup_steps=optim.pop("warmup_steps", 0), max_steps=max_steps,
                             kind=optim.pop("scheduler", "cosine"),
                             min_lr_ratio=optim.pop("min_lr_ratio", 0.0),
                             hold_steps=freeze_steps)
        self.untrained = freeze_parameters(model, getattr(model, "untrained_prefixes", ()))
        self.frozen = [] if freeze_steps else freeze_parameters(model, freeze)
        self.optimizer = build_optimizer(model, **optim, hold=tuple(freeze) if freeze_steps
                                         else ())
        self.scheduler = build_scheduler(self.optimizer, **self.schedule)
        self.scaler = torch.amp.GradScaler(env.device.type,
                                           enabled=self.amp is torch.float16)
        self.loss_of = LossOf(model)
        self.ddp = DistributedDataParallel(
            self.loss_of, find_unused_parameters=getattr(model, "varying_graph", False)
        ) if env.distributed else None
        self.ckpt = CheckpointDir(self.exp_dir, keep_last, keep_best, best_metric)
        self.step = self.epoch = self.position = self.nan_run = 0
        self.stop_signal, self.stop_requested = None, False
        self.writer = self.log_file = None
        self.purge_step = None  # after a resume: tensorboard drops the steps redone
        seed_everything(rank_seed(seed, env.rank), env.device)  # dropout etc. differ by rank

    # ---------------------------------------------------------------- the loop
    def fit(self):
        """Train until ``max_steps``; returns the last validation metrics. Raises
        :class:`Preempted` after a stop signal (checkpoint written)."""
        with self.stop_signals():
            return self._fit()

    def _fit(self):
        micro, metrics, t0, seconds = [], {}, time.time(), 0.0
        while self.step < self.max_steps:
            for batch in self.train_data.batches(self.epoch, start=self.position):
                self.position += 1
                micro.append(batch)
                if len(micro) < self.accum_steps:
                    continue
                stats = self.train_step(micro)
                seconds += sum(b.audio_seconds for b in micro)
                micro = []
                self.check_skipped(epoch_end=False)
                if self.step % self.log_every == 0 or self.step == self.max_steps:
                    stats["audio_sec_per_sec"] = all_reduce_sum([seconds], self.env)[0] / max(
                        1e-9, time.time() - t0)
                    if stats["audio_sec_per_sec"] == 0:
                        logging.warning("step %d: no audio trained on since the last log (every "
                                        "item skipped?): see %s", self.step,
                                        self.exp_dir / "skipped.tsv")
                    stats["rss_mib"] = resident_mib()
                    if self.env.device.type == "cuda":
                        stats["gpu_peak_mib"] = torch.cuda.max_memory_allocated(
                            self.env.device) / 2**20
                    self.log("train", stats)
                    self.write_skipped()
                    t0, seconds = time.time(), 0.0
                if self.step % self.val_every == 0 or self.step == self.max_steps:
                    metrics = self.validate()
                saved = self.step % self.save_every == 0 or self.step == self.max_steps
                if saved:
                    self.save(metrics if self.step % self.val_every == 0
                              or self.step == self.max_steps else None)
                if self.stop_requested and self.step < self.max_steps:
                    if not saved:
                        self.save(None)
                    name = signal.Signals(self.stop_signal).name if self.stop_signal else \
                        "another rank's signal"
                    raise Preempted(f"stopped by {name} at step {self.step}/{self.max_steps}; "
                                    f"checkpoint {self.ckpt.path(self.step)}; continue with "
                                    "--resume")
                if self.step >= self.max_steps:
                    break
            else:  # epoch finished
                self.check_skipped(epoch_end=True)
                self.epoch, self.position = self.epoch + 1, 0
                self.epoch_items = [0.0] * len(self.epoch_items)
        return metrics

    @contextlib.contextmanager
    def stop_signals(self):
        """While training, SIGTERM / SIGUSR1 only set a flag; the ranks agree on it at the
        next step boundary (it rides on the step's statistics all-reduce)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request(signum, frame):
            self.stop_signal = signum
            logging.warning("rank %d: %s received: checkpoint and stop after this step",
                            self.env.rank, signal.Signals(signum).name)

        previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def check_skipped(self, epoch_end: bool):
        """Stop when the data leaves too little to train on (same decision on every rank: the
        counts are summed over ranks with each step's statistics)."""
        seen, kinds = self.epoch_items[0], self.epoch_items[1:]
        skipped = sum(kinds)
        if not seen:
            return
        all_bad = skipped == seen and self.position >= FIRST_BATCHES * self.accum_steps
        too_many = (epoch_end or seen >= 100) and skipped > self.max_skipped_fraction * seen
        if not (all_bad or too_many):
            return
        self.write_skipped()
        raise DataError(f"training data: {int(skipped)} of {int(seen)} items of epoch "
                        f"{self.epoch} skipped so far (train.max_skipped_fraction "
                        f"{self.max_skipped_fraction}): {skip_summary(kinds)}. Rows and "
                        f"reasons: {self.exp_dir / 'skipped.tsv'}{skip_hints(kinds)}")

    def context(self) -> tuple:
        """(C, L, R) of this optimizer step: the same on every rank and micro-batch, and a
        function of (seed, step) only, so resume and world size never change it."""
        if self.step < self.full_context_steps:
            return (0, 0, 0)
        rng = random.Random(self.seed * 1_000_003 + self.step)
        chunks, lefts, rights = self.contexts
        chunk, left, right = rng.choice(chunks), rng.choice(lefts), rng.choice(rights)
        if chunk <= 0:
            return (0, 0, 0)
        if self.streaming and right >= chunk:
            right = max([r for r in rights if r < chunk], default=0)
        return (chunk, left, right)

    def train_step(self, micro: List) -> Dict:
        self.model.train()
        net = self.ddp or self.loss_of
        ctx = self.context()
        sums = dict.fromkeys(self.model.stat_names, 0.0)
        items = [0.0] * len(self.epoch_items)
        for i, batch in enumerate(micro):
            self.skipped += [(self.step, s) for s in batch.skipped]
            items[0] += batch.rows + len(batch.skipped)
            for s in batch.skipped:
                items[1 + SKIP_KINDS.index(s.kind)] += 1
            sync = i == len(micro) - 1 or self.ddp is None
            with (nullcontext() if sync else self.ddp.no_sync()), self.autocast():
                if batch.feats.size(0) == 0:  # every item was bad: keep ranks in lockstep
                    out = net(None)
                else:
                    b = batch.to(self.env.device)
                    out = net(b.feats, b.feats_lens, b.targets, b.target_lens, *ctx,
                              **_labels(b))
                self.scaler.scale(out["loss"] / len(micro)).backward()
            for k in sums:
                if out.get(k) is not None:
                    sums[k] += float(out[k].detach()) / len(micro)
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.grad_clip)
        finite = bool(torch.isfinite(norm))
        if finite:
            self.scaler.step(self.optimizer)
            self.nan_run = 0
        else:
            self.nan_run += 1
            logging.warning("step %d: non-finite gradient norm, update skipped (%d in a row)",
                            self.step, self.nan_run)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.nan_run >= self.nan_limit:
            self.save(None)
            raise NonFiniteLoss(f"{self.nan_run} non-finite gradient norms in a row at step "
                                f"{self.step}; checkpoint saved in {self.ckpt.dir}")
        self.scheduler.step()
        self.step += 1
        totals = all_reduce_sum([*sums.values(), float(self.stop_signal is not None), *items],
                                self.env)
        self.stop_requested = totals[len(sums)] > 0
        self.epoch_items = [a + b for a, b in zip(self.epoch_items, totals[len(sums) + 1:])]
        totals = totals[:len(sums)]
        sums = dict(zip(sums, (v / self.env.world_size for v in totals)))
        lr = max(g["lr"] / g["lr_scale"] for g in self.optimizer.param_groups)
        return {**sums, "grad_norm": float(norm), "lr": lr, "skipped_steps": int(not finite),
                "chunk": ctx[0]}

    def autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp)

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> Dict:
        """Dev statistics (the model's ``stat_names``, utterance-weighted) and, with a
        tokenizer, greedy CTC CER/WER (decode_features, as recognize), over all ranks. Random
        draws (SSL masks) come from a generator seeded the same at every validation, and the
        training random state is left as it was."""
        if self.dev_data is None:
            return {}
        self.model.eval()
        names = self.model.stat_names
        stats = [0.0] * (2 * len(names))  # per statistic: value·n, n
        errors = [0.0] * (4 * len(self.decode_contexts))  # per context: word errors, words,
        # char errors, chars
        kinds = [0.0] * len(SKIP_KINDS)  # dev items skipped, by kind
        cuda = [self.env.device] if self.env.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            for batch in self.dev_data.batches(0):
                for s in batch.skipped:
                    kinds[SKIP_KINDS.index(s.kind)] += 1
                if batch.feats.size(0) == 0:
                    continue
                b = batch.to(self.env.device)
                with self.autocast():
                    out = self.model(b.feats, b.feats_lens, b.targets, b.target_lens,
                                     *self.val_context, **_labels(b))
                n = b.feats.size(0)
                for i, name in enumerate(names):
                    if out.get(name) is not None:
                        stats[2 * i] += float(out[name]) * n
                        stats[2 * i + 1] += n
                if self.tokenizer is not None:
                    errors = [a + x for a, x in zip(errors, self.error_counts(b))]
        totals = all_reduce_sum(stats + errors + kinds, self.env)
        kinds = totals[len(stats) + len(errors):]
        if totals[1] == 0:  # stat_names[0] is "loss", always there
            raise DataError(f"dev data: no utterance could be used ({int(sum(kinds))} skipped"
                            f"{': ' + skip_summary(kinds) if sum(kinds) else ''}), so there is "
                            f"nothing to validate on{skip_hints(kinds)}")
        metrics = {name: totals[2 * i] / totals[2 * i + 1] for i, name in enumerate(names)
                   if totals[2 * i + 1] > 0}
        if self.tokenizer is not None:
            for i, suffix in enumerate(self.decode_contexts):
                we, wn, ce, cn = totals[len(stats) + 4 * i:len(stats) + 4 * i + 4]
                metrics.update({f"wer{suffix}": 100.0 * we / max(wn, 1),
                                f"cer{suffix}": 100.0 * ce / max(cn, 1)})
        metrics["utterances"] = int(totals[1])  # stat_names[0] is "loss", always there
        self.log("dev", metrics)
        return metrics

    def error_counts(self, b) -> List[float]:
        """Greedy CTC word and character errors of one dev batch in each decoding context:
        [word errors, words, char errors, chars] per context, concatenated."""
        feats = [f[:t] for f, t in zip(b.feats, b.feats_lens.tolist())]
        refs = [normalize_text(self.tokenizer.decode(target[:length].tolist()))
                for target, length in zip(b.targets, b.target_lens.tolist())]
        out = []
        for ctx in self.decode_contexts.values():
            counts = [0.0] * 4
            for hyp, ref in zip(decode_features(self.model, feats, *ctx,
                                                mode=getattr(self.model, "modes",
                                                             ("ctc_greedy",))[0]), refs):
                w = error_counts(ref, normalize_text(hyp.text), "word")
                c = error_counts(ref, normalize_text(hyp.text), "char")
                counts = [a + x for a, x in zip(counts, (*w, *c))]
            out += counts
        return out

    # ---------------------------------------------------------------- state
    def state_dict(self, rng: List[Dict]) -> Dict:
        """Everything a resume needs; ``rng``: every rank's RNG states, in rank order."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rng, "step": self.step, "epoch": self.epoch,
                "position": self.position, "nan_run": self.nan_run,
                "epoch_items": self.epoch_items}

    def save(self, metrics: Optional[Dict]):
        """Checkpoint this step (called by every rank: it gathers their RNG states and checks
        that their weights agree)."""
        self.write_skipped()
        rngs = gather_to_main([rng_state(self.env.device)], self.env)
        with torch.no_grad():
            params = [p.detach() for p in self.model.parameters()]
            check_in_sync([float(sum(p.double().sum() for p in params)),
                           float(sum(p.double().abs().sum() for p in params))], self.env,
                          f"model weights at step {self.step}")
        if self.env.is_main:
            self.ckpt.save(self.state_dict(rngs), self.step, metrics)

    def resume(self, path: Optional[Path] = None) -> bool:
        """Load the latest (or given) checkpoint of this experiment; False if there is none.
        The file is read on the CPU (RNG states must stay there); the model and optimizer
        state go to their parameters' device."""
        path = path or self.ckpt.latest()
        if path is None:
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        self.step, self.epoch = state["step"], state["epoch"]
        self.position, self.nan_run = state["position"], state["nan_run"]
        self.epoch_items = list(state.get("epoch_items", self.epoch_items))
        if len(rngs) == self.env.world_size:
            set_rng_state(rngs[self.env.rank], self.env.device)
        else:
            logging.warning("checkpoint from %d rank(s), now %d: random states seeded afresh "
                            "(data order and augmentation stay exact)", len(rngs),
                            self.env.world_size)
            seed_everything(rank_seed(self.seed * 1_000_003 + self.step, self.env.rank),
                            self.env.device)
        if self.env.is_main:
            self.forget_logs_after(self.step)
        logging.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step,
                     self.epoch, self.position)
        return True

    def forget_logs_after(self, step: int):
        """Drop what the logs hold of steps after ``step`` (a resumed run redoes them): rows of
        ``train_log.jsonl`` and ``skipped.tsv``, and tensorboard's events (purged on reading,
        from the next writer's ``purge_step``)."""
        keep = {"train_log.jsonl": lambda line: json.loads(line)["step"] <= step,
                # a skipped row carries the step it was drawn for: step N's batch reads N - 1
                "skipped.tsv": lambda line: int(line.split("\t", 1)[0]) < step}
        for name, wanted in keep.items():
            path = self.exp_dir / name
            if path.exists():
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                tmp = path.with_name(name + ".tmp")
                tmp.write_text("".join(x for x in lines if x.strip() and wanted(x)),
                               encoding="utf-8")
                os.replace(tmp, path)
        self.purge_step = step + 1

    # ---------------------------------------------------------------- logging
    def write_skipped(self):
        """Append the rows every rank left out since the last call to ``skipped.tsv``
        (``<step>\t<key>\t<audio>\t<reason>``); called by all ranks at the same steps."""
        rows, self.skipped = gather_to_main(self.skipped, self.env), []
        if rows:
            show = partial(display_key, mode=self.key_mode)
            with open(self.exp_dir / "skipped.tsv", "a", encoding="utf-8") as f:
                f.writelines(f"{step}\t{show(s.key)}\t{show(s.audio)}\t{s.reason}\n"
                             for step, s in rows)

    def log(self, split: str, stats: Dict):
        if not self.env.is_main:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(self.exp_dir / "tensorboard", purge_step=self.purge_step)
            self.log_file = open(self.exp_dir / "train_log.jsonl", "a", encoding="utf-8")
        for k, v in stats.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"{split}/{k}", v, self.step)
        self.writer.flush()
        self.log_file.write(json.dumps({"split": split, "step": self.step, **stats}) + "\n")
        self.log_file.flush()
        shown = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in stats.items())
        logging.info("%s step %d/%d: %s", split, self.step, self.max_steps, shown)
