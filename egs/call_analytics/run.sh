#!/usr/bin/env bash
# Call analytics on the default recipe's encoder: task heads (intent, emotion, speaker, call
# outcome) with LoRA adapters on the trained encoder against the same on a randomly
# initialised one (encoder weights fixed in both); the call outcome also from the heads'
# scores of every speaker turn; evaluation (accuracy, macro-F1, UA/WA, speaker EER,
# confusion PNGs), embedding export, pre-labeling of test calls and the HTML call report.
#   bash run.sh                 # after the top-level run.sh (stage 0 runs it when needed)
# Stages: 0 default corpus + model, 1 utterance, call and turn lists, 2 heads (trained / random
# encoder), 3 evaluation (utterances, whole calls, the outcome from the heads' turn scores),
# 4 embeddings + pre-labeling + report, 5 results table.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=5
root=$(cd ../.. && pwd)
data_dir=$root/data/default      # the top-level recipe's corpus
model_dir=$root/exp/default/final
exp_dir=exp
config=conf/heads.yaml
max_steps=2000
num_calls="600 300 200"          # synthetic calls made from train, dev and test
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
  log "Stage 1: utterance lists, synthetic calls and their turns → $lists"
  python local/make_lists.py --data_dir "$data_dir" --out_dir "$lists" --num_calls $num_calls
  touch "$lists/.done"
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  for init in trained random; do
    exp=$exp_dir/heads_$init
    [ -f "$exp/.done" ] && continue
    log "Stage 2: heads (and LoRA adapters) on the $init encoder → $exp"
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
    exp=$exp_dir/heads_$init
    for set in utts_test calls_test turns_dev turns_test; do
      python -m chunkformer.bin.evaluate_heads --model_dir "$exp/final" \
        --data "$lists/$set.list" --output_dir "$exp/eval_${set%_test}"
    done
    log "Stage 3: the outcome from the $init-encoder heads' turn scores (fit on dev calls)"
    python -m chunkformer.bin.call_outcome fit --turns "$lists/turns_dev.list" \
      --scores "$exp/eval_turns_dev/scores.jsonl" --calls "$lists/calls_dev.list" \
      --heads intent,emotion --output "$exp/turn_outcome.json"
    python -m chunkformer.bin.call_outcome predict --model "$exp/turn_outcome.json" \
      --turns "$lists/turns_test.list" --scores "$exp/eval_turns/scores.jsonl" \
      --calls "$lists/calls_test.list" --output_dir "$exp/eval_turn_outcome"
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: call embeddings, pre-labels and the call report"
  python -m chunkformer.bin.extract_embeddings --model_dir "$exp_dir/heads_trained/final" \
    --data "$lists/calls_test.list" --output_dir "$exp_dir/embeddings" --layer weighted \
    --chunk_size 0
  head -n 20 "$lists/calls_test.list" > "$lists/calls_labeled.list"  # what annotators did
  # transcripts turn by turn (the ASR model never heard a turn change inside one utterance),
  # joined per call in time order
  python -m chunkformer.bin.recognize --model_dir "$model_dir" --data "$lists/turns_test.list" \
    --output_dir "$exp_dir/turns_asr" --chunk_size 0 > "$exp_dir/turns_asr.log" 2>&1
  python local/join_turns.py --turns "$lists/turns_test.list" --text "$exp_dir/turns_asr/text" \
    > "$exp_dir/calls_text"
  python -m chunkformer.bin.prelabel --index "$exp_dir/embeddings/index.tsv" --k "$k" \
    --labeled "$lists/calls_labeled.list" --label_field outcome --rules conf/rules.yaml \
    --transcripts "$exp_dir/calls_text" \
    --predictions "$exp_dir/heads_trained/eval_turn_outcome/predictions.tsv" \
    --output "$exp_dir/prelabel.csv"
  head -n 5 "$lists/calls_test.list" > "$lists/calls_report.list"
  python -m chunkformer.bin.report --model_dir "$exp_dir/heads_trained/final" \
    --asr_dir "$model_dir" --data "$lists/calls_report.list" \
    --turn_outcome "$exp_dir/heads_trained/turn_outcome.json" \
    --output "$exp_dir/report/index.html" --title "Synthetic banking calls"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: results → $exp_dir/results.md"
  python local/summarize.py --exp_dir "$exp_dir" | tee "$exp_dir/results.md"
fi
