#!/usr/bin/env bash
# Common Voice (e.g. cv-corpus-*/vi): train ChunkFormer from scratch, or fine-tune the released
# large model, then average and decode. `bash run.sh --help` lists the options.
#   bash run.sh --cv_root /corpora/cv-corpus-17.0/vi --stage 0 --stop_stage 5
#   bash run.sh --cv_root ... --train_config conf/finetune_large.yaml \
#       --pretrained /models/chunkformer-ctc-large-vie --name cv_finetune
# Stages: 0 check the release layout, 1 data.list + CMVN (+ shards), 2 vocabulary,
# 3 training, 4 averaging, 5 decoding + scoring (../../tools/asr_stages.sh). Finished work is
# marked with .done files.
set -euo pipefail
cd "$(dirname "$0")"

stage=0; stop_stage=5
cv_root=""                      # folder holding train.tsv dev.tsv test.tsv and clips/
data=data; exp=exp; name=cv_scratch
train_config=conf/train_from_scratch.yaml
pretrained=""                   # released model folder: fine-tune it and reuse its vocabulary
ngpu=1                          # >1: torchrun --nproc_per_node; 0: CPU
max_steps=""                    # empty: the config's train.max_steps
vocab_size=1024                 # BPE pieces (training from scratch)
nj=4; cmvn_max_utts=20000
use_shards=false; shard_size=1000
num_avg=5; avg_mode=best
decode_sets="test dev"; decode_mode=ctc_greedy
chunk_size=64; left_context_size=128; right_context_size=128
_options="stage stop_stage cv_root data exp name train_config pretrained ngpu max_steps vocab_size
  nj cmvn_max_utts use_shards shard_size num_avg avg_mode decode_sets decode_mode chunk_size
  left_context_size right_context_size"
. ../../tools/parse_options.sh
[ -f ../../tools/env.sh ] && . ../../tools/env.sh

log() { echo "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }
dir=${exp}/${name}
splits="train dev test"

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ]; then
  log "Stage 0: Common Voice release layout in ${cv_root}"
  [ -n "${cv_root}" ] || { echo "--cv_root is required" >&2; exit 1; }
  if [ ! -f ${data}/local/.done ]; then
    mkdir -p ${data}/local
    for s in ${splits}; do
      [ -f ${cv_root}/${s}.tsv ] || { echo "${cv_root}/${s}.tsv not found" >&2; exit 1; }
      cp ${cv_root}/${s}.tsv ${data}/local/${s}.tsv
    done
    python local/check_mp3.py ${data}/local/train.tsv ${cv_root}/clips
    touch ${data}/local/.done
  fi
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: validated data.list (durations, normalised text) and global CMVN"
  for s in ${splits}; do
    [ -f ${data}/${s}/.done ] && continue
    python -m chunkformer.bin.prepare_data --data ${data}/local/${s}.tsv \
      --audio_root ${cv_root}/clips --output ${data}/${s}/data.list --require_text --num_workers ${nj}
    touch ${data}/${s}/.done
  done
fi

# Stage 1 (CMVN, shards) and stages 2-5 are the same for every corpus.
. ../../tools/asr_stages.sh
