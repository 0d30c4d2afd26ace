#!/usr/bin/env bash
# VLSP (layout: README.md): train ChunkFormer from scratch, or fine-tune the released
# large model, then average and decode. `bash run.sh --help` lists the options.
#   bash run.sh --vlsp_root /corpora/vlsp2020 --stage 0 --stop_stage 5
#   bash run.sh --vlsp_root ... --train_config conf/finetune_large.yaml \
#       --pretrained /models/chunkformer-ctc-large-vie --name vlsp_finetune
# Stages: 0 check the release layout, 1 data.list + CMVN (+ shards), 2 vocabulary,
# 3 training, 4 averaging, 5 decoding + scoring (../../tools/asr_stages.sh). Finished work is
# marked with .done files.
set -euo pipefail
cd "$(dirname "$0")"

stage=0; stop_stage=5
vlsp_root=""                    # folder holding train/ [dev/] test/ (README.md)
dev_fraction=0.05               # without dev/: this share of train (by recording) becomes dev
data=data; exp=exp; name=vlsp_scratch
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
_options="stage stop_stage vlsp_root dev_fraction data exp name train_config pretrained ngpu max_steps vocab_size
  nj cmvn_max_utts use_shards shard_size num_avg avg_mode decode_sets decode_mode chunk_size
  left_context_size right_context_size"
. ../../tools/parse_options.sh
[ -f ../../tools/env.sh ] && . ../../tools/env.sh

log() { echo "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }
dir=${exp}/${name}
splits="train dev test"

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ] && [ ! -f ${data}/local/.done ]; then
  log "Stage 0: VLSP release layout in ${vlsp_root} → Kaldi data dirs in ${data}/local"
  [ -n "${vlsp_root}" ] || { echo "--vlsp_root is required" >&2; exit 1; }
  for s in ${splits}; do
    [ -d ${vlsp_root}/${s} ] || continue
    python local/prepare_vlsp.py ${vlsp_root}/${s} ${data}/local/${s}
  done
  [ -d ${data}/local/train ] && [ -d ${data}/local/test ] || \
    { echo "${vlsp_root}: train/ and test/ are required" >&2; exit 1; }
  touch ${data}/local/.done
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: validated data.list (durations, normalised text) and global CMVN"
  for s in ${splits}; do
    [ -d ${data}/local/${s} ] || continue
    [ -f ${data}/${s}/.done ] && continue
    out=${data}/${s}/data.list
    [ ${s} = train ] && [ ! -d ${data}/local/dev ] && out=${data}/train_all/data.list
    python -m chunkformer.bin.prepare_data --data ${data}/local/${s} --output ${out} \
      --require_text --num_workers ${nj}
    if [ ${out} != ${data}/${s}/data.list ]; then
      log "no dev/ in ${vlsp_root}: ${dev_fraction} of train (whole recordings) → ${data}/dev"
      python -m chunkformer.bin.split_data --data ${out} --by group --dev_fraction ${dev_fraction} \
        --seed 0 --train ${data}/train/data.list --dev ${data}/dev/data.list
      mkdir -p ${data}/dev && touch ${data}/dev/.done
    fi
    touch ${data}/${s}/.done
  done
fi

# Stage 1 (CMVN, shards) and stages 2-5 are the same for every corpus.
. ../../tools/asr_stages.sh
