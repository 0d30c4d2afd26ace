#!/usr/bin/env bash
# Does BEST-RQ pretraining help when only a tenth of the audio is transcribed? On the embedded
# default corpus (the top-level run.sh synthesises it): pretrain the encoder on all the train
# audio without transcripts, fine-tune it with CTC on a 10% labeled subset, and train the same
# model from scratch on the same subset with the same budget, for each seed; decode the held-out
# test set (unseen sentences and voices) and tabulate CER (exp/results.md).
#   bash run.sh                          # stages 0-5, ~30-45 minutes on 2 CPU cores
#   bash run.sh --seeds "0 1 2" --stage 4
# Stages: 0 corpus, lists, CMVN, fbank (top-level run.sh stages 0-1), 1 labeled subset, audio-only
# list and its BPE vocabulary, 2 pretraining, 3 averaging, 4 fine-tuning from SSL and from
# scratch per seed (train, average, decode, score), 5 results table.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=5
data_dir=$(cd ../.. && pwd)/data/default   # the top-level recipe's corpus
exp_dir=exp
labeled_fraction=0.1         # share of the train audio whose transcripts are used
seeds="0 1"                  # fine-tuning seeds (each: one model from SSL, one from scratch)
ssl_config=../../conf/ssl_bestrq.yaml
ft_config=conf/finetune.yaml
ssl_steps=3000               # pretraining steps (60 s of audio each with 2 processes)
ft_steps=1500                # fine-tuning steps, the same for both initialisations
freeze_steps=100             # the pretrained encoder is held while the new CTC head settles
vocab_size=200               # BPE pieces, learnt from the labeled subset only
train_procs=2                # torchrun processes of one thread each (gloo)
nj=2
corpus_options=""            # passed to the top-level run.sh, e.g. "--num_train 600"
ssl_overrides=""             # more pretraining settings, "section.key=value ..."
ft_overrides=""              # more fine-tuning settings (both initialisations)
_options="stage stop_stage data_dir exp_dir labeled_fraction seeds ssl_config ft_config ssl_steps
  ft_steps freeze_steps vocab_size train_procs nj corpus_options ssl_overrides ft_overrides"
. ../../tools/parse_options.sh

log() { echo "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }
train() {  # train <exp> <config> <overrides...>: torchrun on CPU, resumable, jemalloc
  local exp=$1 config=$2; shift 2
  [ -f "$exp/.done" ] && return 0
  local launcher="python" resume=""
  [ "$train_procs" -gt 1 ] && launcher="torchrun --standalone --nproc_per_node=$train_procs"
  [ -f "$exp/checkpoints/latest" ] && resume="--resume"
  ( . ../../tools/env.sh && $launcher -m chunkformer.bin.train --config "$config" \
      --exp_dir "$exp" --device cpu $resume --override "$@" )
  touch "$exp/.done"
}
sub=$data_dir/labeled_$labeled_fraction
feats="data.train_feats_scp=$data_dir/train/fbank/feats.scp
  data.dev_feats_scp=$data_dir/dev/fbank/feats.scp"

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ]; then
  log "Stage 0: the default corpus, its lists, CMVN and fbank → $data_dir"
  corpus_exp=$(realpath -m "$exp_dir/corpus")  # its stage timings
  (cd ../.. && bash run.sh --stop_stage 1 --data_dir "$data_dir" --exp_dir "$corpus_exp" \
    $corpus_options)
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ] && [ ! -f "$sub/.done" ]; then
  log "Stage 1: $labeled_fraction of train labeled, all of it as audio only, BPE of the subset"
  mkdir -p "$sub"
  # whole utterances, seeded; split_data's "dev" side is the labeled share
  python -m chunkformer.bin.split_data --data "$data_dir/train/data.list" --by group \
    --dev_fraction "$labeled_fraction" --seed 0 --train "$sub/unlabeled.list" \
    --dev "$sub/data.list"
  python local/audio_only.py "$data_dir/train/data.list" "$sub/audio.list"
  python local/audio_only.py "$data_dir/dev/data.list" "$sub/dev_audio.list"
  python -m chunkformer.bin.build_vocab --data "$sub/data.list" --kind bpe \
    --vocab_size "$vocab_size" --output_dir "$sub/lang"
  touch "$sub/.done"
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: BEST-RQ pretraining on $(wc -l < "$sub/audio.list") utterances without text"
  train "$exp_dir/ssl" "$ssl_config" data.train="$sub/audio.list" \
    data.dev="$sub/dev_audio.list" data.cmvn="$data_dir/train/global_cmvn" $feats \
    train.max_steps="$ssl_steps" $ssl_overrides
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: average the last pretraining checkpoints → $exp_dir/ssl/final"
  python -m chunkformer.bin.average_model --exp_dir "$exp_dir/ssl" --num 3 --mode last \
    --out "$exp_dir/ssl/final"
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  for seed in $seeds; do
    for init in ssl scratch; do
      exp=$exp_dir/${init}_seed$seed
      log "Stage 4: fine-tune ($init, seed $seed) on $(wc -l < "$sub/data.list") labeled → $exp"
      extra=""
      [ $init = ssl ] && extra="train.init_encoder_from=$exp_dir/ssl/final
        train.freeze=[encoder.] train.freeze_steps=$freeze_steps"
      train "$exp" "$ft_config" data.train="$sub/data.list" data.dev="$data_dir/dev/data.list" \
        data.cmvn="$data_dir/train/global_cmvn" tokenizer.path="$sub/lang/bpe.model" $feats \
        train.max_steps="$ft_steps" train.seed="$seed" $extra $ft_overrides
      python -m chunkformer.bin.average_model --exp_dir "$exp" --num 5 --mode last \
        --out "$exp/final"
      mkdir -p "$exp/decode_test"
      python -m chunkformer.bin.recognize --model_dir "$exp/final" \
        --data "$data_dir/test/data.list" --output_dir "$exp/decode_test" --chunk_size 0 \
        > "$exp/decode_test/log" 2>&1
      for name in all telephone wideband; do
        list=$data_dir/test/$name.list; [ $name = all ] && list=$data_dir/test/data.list
        python -m chunkformer.bin.score --hyp "$exp/decode_test/text" --ref "$list" \
          --report "$exp/decode_test/errors_$name.tsv" > "$exp/decode_test/$name.score"
      done
      log "  $init seed $seed: $(cat "$exp/decode_test/all.score")"
    done
  done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: results → $exp_dir/results.md"
  python local/summarize.py --exp_dir "$exp_dir" --seeds $seeds | tee "$exp_dir/results.md"
fi
