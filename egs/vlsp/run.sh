#!/usr/bin/env bash
# VLSP (layout: README.md): train ChunkFormer from scratch, or fine-tune the released
# large model, then average and decode. `bash run.sh --help` lists the options.
#   bash run.sh --vlsp_root /corpora/vlsp2020 --stage 0 --stop_stage 5
#   bash run.sh --vlsp_root ... --train_config conf/finetune_large.yaml \
#       --pretrained /models/chunkformer-ctc-large-vie --name vlsp_finetune
# Stages: 0 check the release layout, 1 data.list + CMVN (+ shards), 2 vocabulary,
# 3 training, 4 averaging, 5 decoding + scoring. Finished work is marked with .done files.
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
  if [ ! -f ${data}/train/global_cmvn ]; then
    python -m chunkformer.bin.compute_cmvn --data ${data}/train/data.list \
      --output ${data}/train/global_cmvn --num_workers ${nj} --max_utts ${cmvn_max_utts}
  fi
  if ${use_shards} && [ ! -f ${data}/train/shards/.done ]; then
    python -m chunkformer.bin.make_shards --data ${data}/train/data.list \
      --output_dir ${data}/train/shards --shard_size ${shard_size} --shuffle --num_workers ${nj}
    touch ${data}/train/shards/.done
  fi
fi

if [ -n "${pretrained}" ]; then lang=${data}/lang_released; else lang=${data}/lang_bpe; fi
if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ] && [ ! -f ${lang}/.done ]; then
  if [ -n "${pretrained}" ]; then
    log "Stage 2: reuse the vocabulary of ${pretrained} (unencodable characters: ${lang}/oov.tsv)"
    python -m chunkformer.bin.build_vocab --data ${data}/train/data.list --kind released \
      --model_dir ${pretrained} --output_dir ${lang}
  else
    log "Stage 2: BPE vocabulary (${vocab_size} pieces)"
    python -m chunkformer.bin.build_vocab --data ${data}/train/data.list --kind bpe \
      --vocab_size ${vocab_size} --output_dir ${lang}
  fi
  touch ${lang}/.done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ] && [ ! -f ${dir}/.train.done ]; then
  log "Stage 3: training ${dir} on ${ngpu} GPU(s) with ${train_config}"
  train_list=${data}/train/data.list
  ${use_shards} && train_list=${data}/train/shards/shards.list
  overrides="data.train=${train_list} data.dev=${data}/dev/data.list data.cmvn=${data}/train/global_cmvn"
  if [ -n "${pretrained}" ]; then
    overrides="${overrides} train.init_from=${pretrained} tokenizer.path=null"
  elif [ -f ${lang}/bpe.model ]; then
    overrides="${overrides} tokenizer.path=${lang}/bpe.model"
  fi
  [ -n "${max_steps}" ] && overrides="${overrides} train.max_steps=${max_steps}"
  resume=""; [ -e ${dir}/checkpoints/latest ] && resume="--resume"
  device=auto; [ ${ngpu} -eq 0 ] && device=cpu
  if [ ${ngpu} -gt 1 ]; then
    launcher="torchrun --standalone --nproc_per_node=${ngpu} -m chunkformer.bin.train"
  else
    launcher="python -m chunkformer.bin.train"
  fi
  cmd="${launcher} --config ${train_config} --exp_dir ${dir} --device ${device} --override ${overrides}"
  mkdir -p ${dir}
  echo "cd $(pwd) && ${cmd} --resume" > ${dir}/run.sh   # one line to continue this stage
  ${cmd} ${resume}
  touch ${dir}/.train.done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ] && [ ! -f ${dir}/.average.done ]; then
  log "Stage 4: averaging the ${avg_mode} ${num_avg} checkpoints → ${dir}/final"
  python -m chunkformer.bin.average_model --exp_dir ${dir} --num ${num_avg} --mode ${avg_mode} \
    --out ${dir}/final
  touch ${dir}/.average.done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  for s in ${decode_sets}; do
    out=${dir}/decode_${s}_${decode_mode}_c${chunk_size}_l${left_context_size}_r${right_context_size}
    log "Stage 5: decoding ${s} → ${out}"
    python -m chunkformer.bin.recognize --model_dir ${dir}/final --data ${data}/${s}/data.list \
      --output_dir ${out} --mode ${decode_mode} --chunk_size ${chunk_size} \
      --left_context_size ${left_context_size} --right_context_size ${right_context_size} \
      | tee ${out}.log
    grep '^WER' ${out}.log > ${out}/scores.txt || true
    log "${s}: $(cat ${out}/scores.txt 2>/dev/null)"
  done
fi
