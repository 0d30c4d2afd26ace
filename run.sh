#!/usr/bin/env bash
# The default recipe, end to end on a CPU: synthesise a Vietnamese banking call-center corpus
# offline (espeak-ng), train a small ChunkFormer from scratch, average, decode the held-out test
# set (unseen sentences and voices) and score it, overall and per channel.
#   bash run.sh                        # stages 0-6, ~17 minutes on 2 CPU cores (+ install)
#   bash run.sh --stage 5              # decode and score again (utterances, then whole calls)
#   bash run.sh --num_train 30 --max_steps 5 --exp_dir /tmp/e --data_dir /tmp/d   # smoke run
# Stages: 0 synthesise corpus, 1 lists + CMVN + fbank, 2 BPE vocabulary, 3 train, 4 average,
# 5 decode the test utterances, 6 decode and score the test calls (each turn alone and whole
# calls, mono in full and low-latency context, stereo with the channels split).
# A rerun skips finished stages (.done markers hold their settings); an interrupted training
# resumes from its last checkpoint. The model folder is <exp_dir>/final (released layout).
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=6
install=true                 # run tools/install.sh first (idempotent: only checks when done)
data_dir=data/default
exp_dir=exp/default
config=conf/train_default.yaml
num_train=6000               # corpus size (utterances; about 3.6 s each)
num_dev=100
num_test=200
num_dev_calls=10             # whole two-channel 8 kHz calls (dev_calls/, test_calls/)
num_test_calls=20
telephone_fraction=0.5
shuffled_fraction=0.7        # train utterances of shuffled words (no template language model)
even_word_fraction=0.5       # words of those drawn evenly from the train vocabulary
seed=0
nj=2                         # parallel jobs for synthesis, CMVN and fbank
train_procs=2                # training processes (torchrun, gloo), one thread each: on 2 cores
                             # ~1.25x the throughput of one process with 2 threads
vocab_size=300               # BPE pieces: ~0.4 tokens per encoder frame, none too long for CTC
max_steps=5000               # optimizer steps; the warm-up + cosine schedule spans them
overrides=""                 # more trainer settings, "section.key=value ..."
average_num=5
average_mode=last            # last | best (dev loss; only validated checkpoints have one)
decode_mode=ctc_greedy
max_symbols=4                # rnnt_* modes: symbols one 80 ms frame may emit at most (the
                             # reference's 64 let this model loop on one frame of a whole call)
decode_chunk_size=0          # ≤ 0: full context; e.g. 32 with 32 left / 8 right for streaming
decode_left_context=0
decode_right_context=0
low_latency="8 32 0"         # chunk / left / right context of the low-latency call decoding (the live server's)
_options="stage stop_stage install data_dir exp_dir config num_train num_dev num_test
  num_dev_calls num_test_calls low_latency
  telephone_fraction shuffled_fraction even_word_fraction seed nj train_procs vocab_size max_steps overrides
  average_num average_mode decode_mode max_symbols decode_chunk_size decode_left_context decode_right_context"
. tools/parse_options.sh

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
# done_with <marker> <settings>: the stage finished before with these settings.
done_with() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
timed() {  # timed <stage>: log how long the stage took (it started at $t0), keep it
  local s=$(( $(date +%s) - t0 )) f=$exp_dir/timings.txt
  log "stage $1 took ${s} s"
  { grep -v "^stage $1:" "$f" 2>/dev/null || true; echo "stage $1: ${s} s"; } | sort > "$f.new"
  mv "$f.new" "$f"
}

mkdir -p "$exp_dir"
echo "cd $(pwd) && bash run.sh $*" > "$exp_dir/run.sh"  # the command that made this experiment
if [ "$install" = true ]; then bash tools/install.sh; fi
corpus="$num_train $num_dev $num_test $num_dev_calls $num_test_calls $telephone_fraction $shuffled_fraction $even_word_fraction $seed"
lang=$data_dir/lang_bpe$vocab_size

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ]; then
  log "Stage 0: synthesise the corpus ($num_train/$num_dev/$num_test utterances)"
  t0=$(date +%s)
  if ! done_with "$data_dir/corpus/.done" "$corpus"; then
    python -m chunkformer.bin.synthesize_corpus --out_dir "$data_dir/corpus" \
      --num_train "$num_train" --num_dev "$num_dev" --num_test "$num_test" --seed "$seed" \
      --telephone_fraction "$telephone_fraction" --shuffled_fraction "$shuffled_fraction" \
      --even_word_fraction "$even_word_fraction" \
      --num_dev_calls "$num_dev_calls" --num_test_calls "$num_test_calls" \
      --jobs "$nj" --no_progress
    echo "$corpus" > "$data_dir/corpus/.done"
  fi
  timed 0
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: checked lists, per-channel test lists, global CMVN, train/dev fbank"
  t0=$(date +%s)
  if ! done_with "$data_dir/.lists.done" "$corpus"; then
    for split in train dev test; do
      python -m chunkformer.bin.prepare_data --data "$data_dir/corpus/$split/data.list" \
        --output "$data_dir/$split/data.list" --require_text --num_workers "$nj"
    done
    for channel in telephone wideband; do  # the synthesiser tags each row with its line
      grep "\"line\": \"$channel\"" "$data_dir/test/data.list" \
        > "$data_dir/test/$channel.list" || true
    done
    python -m chunkformer.bin.compute_cmvn --data "$data_dir/train/data.list" \
      --output "$data_dir/train/global_cmvn" --num_workers "$nj" --max_utts 1000 --seed "$seed"
    for split in train dev; do  # computed once: training reads them instead of the audio
      python -m chunkformer.bin.compute_fbank --data "$data_dir/$split/data.list" \
        --output_dir "$data_dir/$split/fbank" --num_workers "$nj"
    done
    echo "$corpus" > "$data_dir/.lists.done"
  fi
  timed 1
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: BPE vocabulary of $vocab_size pieces"
  t0=$(date +%s)
  if ! done_with "$lang/.done" "$corpus"; then
    python -m chunkformer.bin.build_vocab --data "$data_dir/train/data.list" --kind bpe \
      --vocab_size "$vocab_size" --output_dir "$lang"
    echo "$corpus" > "$lang/.done"
  fi
  timed 2
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: train $config for $max_steps steps → $exp_dir"
  t0=$(date +%s)
  if [ ! -f "$exp_dir/.train.done" ]; then
    resume=""
    [ -f "$exp_dir/checkpoints/latest" ] && resume="--resume"
    launcher="python"  # torchrun gives each process one thread (OMP_NUM_THREADS=1)
    [ "$train_procs" -gt 1 ] && launcher="torchrun --standalone --nproc_per_node=$train_procs"
    # jemalloc, and OpenMP threads that sleep instead of spinning (tools/env.sh)
    ( . tools/env.sh &&
      $launcher -m chunkformer.bin.train --config "$config" --exp_dir "$exp_dir" $resume \
        --device cpu \
        --override tokenizer.path="$lang/bpe.model" data.train="$data_dir/train/data.list" \
          data.dev="$data_dir/dev/data.list" data.cmvn="$data_dir/train/global_cmvn" \
          data.train_feats_scp="$data_dir/train/fbank/feats.scp" \
          data.dev_feats_scp="$data_dir/dev/fbank/feats.scp" \
          train.max_steps="$max_steps" train.seed="$seed" $overrides )
    touch "$exp_dir/.train.done"
  fi
  speed=$(grep -o '"audio_sec_per_sec": [0-9.]*' "$exp_dir/train_log.jsonl" \
    | awk '{s += $2; n++} END {if (n) printf "%.1f", s / n}')
  log "training throughput: ${speed:-?} audio seconds per second (mean of the logged windows)"
  skipped=$(cut -f4 "$exp_dir/skipped.tsv" 2>/dev/null | cut -d: -f1 | sort | uniq -c \
    | xargs || true)
  log "items skipped in training: ${skipped:-none} (see $exp_dir/skipped.tsv)"
  timed 3
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: average $average_num checkpoints ($average_mode) → $exp_dir/final"
  t0=$(date +%s)
  python -m chunkformer.bin.average_model --exp_dir "$exp_dir" --num "$average_num" \
    --mode "$average_mode" --out "$exp_dir/final"
  timed 4
fi

decode_options=()  # the search's options for the decoding mode
case $decode_mode in rnnt_*) decode_options=(--max_symbols "$max_symbols");; esac

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: decode the held-out test set ($decode_mode, context" \
    "$decode_chunk_size/$decode_left_context/$decode_right_context)"
  t0=$(date +%s)
  out=$exp_dir/decode_test
  mkdir -p "$out"
  python -m chunkformer.bin.recognize --model_dir "$exp_dir/final" \
    --data "$data_dir/test/data.list" --output_dir "$out" \
    --mode "$decode_mode" "${decode_options[@]}" \
    --chunk_size "$decode_chunk_size" \
    --left_context_size "$decode_left_context" \
    --right_context_size "$decode_right_context" > "$out/log" 2>&1
  for name in all telephone wideband; do  # one decode, scored per channel
    list=$data_dir/test/$name.list; [ $name = all ] && list=$data_dir/test/data.list
    echo "(no utterances)" > "$out/$name.score"
    [ -s "$list" ] || continue
    python -m chunkformer.bin.score --hyp "$out/text" --ref "$list" \
      --report "$out/errors_$name.tsv" > "$out/$name.score"
  done
  timed 5
  log "Held-out test results (unseen sentences and voices):"
  for name in all telephone wideband; do
    printf '  %-10s %s\n' "$name" "$(cat "$exp_dir/decode_test/$name.score")"
  done
  log "Per-stage timings:"; sed 's/^/  /' "$exp_dir/timings.txt"
  log "Model (released layout): $exp_dir/final   errors: $exp_dir/decode_test/errors_*.tsv"
  log "Training logs: tensorboard --logdir $exp_dir/tensorboard   ($exp_dir/train_log.jsonl)"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ "$num_test_calls" -gt 0 ]; then
  log "Stage 6: the $num_test_calls test calls: each turn alone vs whole calls"
  t0=$(date +%s)
  calls=$data_dir/corpus/test_calls
  out=$exp_dir/decode_calls
  mkdir -p "$out"
  read -r ll_chunk ll_left ll_right <<< "$low_latency"
  decode() {  # decode <name> <list> <chunk> <left> <right> [recognize options]
    local name=$1 list=$2 c=$3 l=$4 r=$5; shift 5
    python -m chunkformer.bin.recognize --model_dir "$exp_dir/final" --data "$list" \
      --output_dir "$out/$name" --chunk_size "$c" --left_context_size "$l" \
      --right_context_size "$r" --mode "$decode_mode" "${decode_options[@]}" "$@" \
      > "$out/$name.log" 2>&1
  }
  for ctx in full low; do
    set -- 0 0 0; [ $ctx = low ] && set -- $ll_chunk $ll_left $ll_right
    decode turns_$ctx "$calls/turns.list" "$@"
    python -m chunkformer.bin.score --hyp "$out/turns_$ctx/text" --ref "$calls/turns.list" \
      > "$out/turns_$ctx.score"
    decode mono_$ctx "$calls/calls.list" "$@"
    python -m chunkformer.bin.score_calls --hyp "$out/mono_$ctx/result.jsonl" \
      --turns "$calls/turns.list" --json "$out/mono_$ctx.json" > "$out/mono_$ctx.score"
    decode stereo_$ctx "$calls/calls_stereo.list" "$@" --channels split \
      --channel_roles agent,customer
    python -m chunkformer.bin.score_calls --hyp "$out/stereo_$ctx/result.jsonl" \
      --turns "$calls/turns_stereo.list" --json "$out/stereo_$ctx.json" \
      > "$out/stereo_$ctx.score"
  done
  timed 6
  log "Test calls (8 kHz, two voices, line noise between turns, barge-ins; CER, low latency" \
    "= $ll_chunk/$ll_left/$ll_right chunk/left/right frames):"
  for ctx in full low; do
    printf '  %-4s each turn cut out and decoded alone: %s\n' $ctx "$(cat "$out/turns_$ctx.score")"
    printf '  %-4s whole call, mono mix:                 %s\n' $ctx "$(cat "$out/mono_$ctx.score")"
    printf '  %-4s whole call, stereo, channels split:   %s\n' $ctx "$(cat "$out/stereo_$ctx.score")"
  done
  log "Per-stage timings:"; sed 's/^/  /' "$exp_dir/timings.txt"
fi
