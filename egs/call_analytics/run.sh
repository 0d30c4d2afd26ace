#!/usr/bin/env bash
# Call analytics on the default recipe's encoder: task heads (intent, emotion, speaker, call
# outcome) on the frozen trained encoder against the same heads on a frozen randomly
# initialised one; evaluation (accuracy, macro-F1, UA/WA, speaker EER, confusion PNGs),
# embedding export, pre-labeling of test calls and the HTML call report.
#   bash run.sh                 # after the top-level run.sh (stage 0 runs it when needed)
# Stages: 0 default corpus + model, 1 utterance and call lists, 2 heads (trained / random
# encoder), 3 evaluation, 4 embeddings + pre-labeling + report, 5 results table.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=5
root=$(cd ../.. && pwd)
data_dir=$root/data/default      # the top-level recipe's corpus
model_dir=$root/exp/default/final
exp_dir=exp
config=conf/heads.yaml
max_steps=1000
num_calls="600 100"              # synthetic calls made from train and from test
k=6                              # clusters for pre-labeling
train_procs=2
overrides=""                     # more heads-training settings, "section.key=value ..."
_options="stage stop_stage data_dir model_dir exp_dir config max_steps num_calls k train_procs
  overrides"
. ../../tools/parse_options.sh

log() { echo "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }
lists=$exp_dir/data

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ] && [ ! -f "$model_dir/config.yaml" ]; then
  log "Stage 0: no $model_dir yet: the top-level recipe makes the corpus and the model"
  (cd ../.. && bash run.sh --data_dir "$data_dir" --exp_dir "$(dirname "$model_dir")")
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ] && [ ! -f "$lists/.done" ]; then
  log "Stage 1: utterance lists and synthetic calls → $lists"
  python local/make_lists.py --data_dir "$data_dir" --out_dir "$lists" --num_calls $num_calls
  touch "$lists/.done"
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  for init in trained random; do
    exp=$exp_dir/heads_$init
    [ -f "$exp/.done" ] && continue
    log "Stage 2: heads on the frozen $init encoder → $exp"
    extra="data.cmvn=$data_dir/train/global_cmvn"
    [ $init = trained ] && extra="train.init_encoder_from=$model_dir"
    launcher="python"
    [ "$train_procs" -gt 1 ] && launcher="torchrun --standalone --nproc_per_node=$train_procs"
    resume=""; [ -f "$exp/checkpoints/latest" ] && resume="--resume"
    ( . ../../tools/env.sh && $launcher -m chunkformer.bin.train --config "$config" \
        --exp_dir "$exp" --device cpu $resume --override data.train="$lists/heads_train.list" \
        data.dev="$data_dir/dev/data.list" train.max_steps="$max_steps" $extra $overrides )
    python -m chunkformer.bin.average_model --exp_dir "$exp" --num 3 --mode last \
      --out "$exp/final"
    touch "$exp/.done"
  done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  for init in trained random; do
    log "Stage 3: evaluate the $init-encoder heads on test utterances and calls"
    for set in utts calls; do
      python -m chunkformer.bin.evaluate_heads --model_dir "$exp_dir/heads_$init/final" \
        --data "$lists/${set}_test.list" --output_dir "$exp_dir/heads_$init/eval_$set"
    done
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: call embeddings, pre-labels and the call report"
  python -m chunkformer.bin.extract_embeddings --model_dir "$exp_dir/heads_trained/final" \
    --data "$lists/calls_test.list" --output_dir "$exp_dir/embeddings" --layer weighted \
    --chunk_size 0
  head -n 20 "$lists/calls_test.list" > "$lists/calls_labeled.list"  # what annotators did
  python -m chunkformer.bin.recognize --model_dir "$model_dir" --data "$lists/calls_test.list" \
    --output_dir "$exp_dir/calls_asr" --chunk_size 0 > "$exp_dir/calls_asr.log" 2>&1
  python -m chunkformer.bin.prelabel --index "$exp_dir/embeddings/index.tsv" --k "$k" \
    --labeled "$lists/calls_labeled.list" --label_field outcome --rules conf/rules.yaml \
    --transcripts "$exp_dir/calls_asr/text" \
    --predictions "$exp_dir/heads_trained/eval_calls/predictions.tsv" \
    --output "$exp_dir/prelabel.csv"
  head -n 5 "$lists/calls_test.list" > "$lists/calls_report.list"
  python -m chunkformer.bin.report --model_dir "$exp_dir/heads_trained/final" \
    --asr_dir "$model_dir" --data "$lists/calls_report.list" \
    --output "$exp_dir/report/index.html" --title "Synthetic banking calls"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: results → $exp_dir/results.md"
  python local/summarize.py --exp_dir "$exp_dir" | tee "$exp_dir/results.md"
fi
