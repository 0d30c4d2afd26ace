# The corpus-independent stages of an egs/<corpus>/run.sh, sourced by it once its own stage 0
# and the data.list part of stage 1 have written ${data}/{train,dev,test}/data.list:
#   1 (rest) global CMVN of train, optional tar shards
#   2 vocabulary: a BPE model trained on train, or the released model's (--pretrained)
#   3 training (torchrun for ngpu > 1), resumable; ${dir}/run.sh holds the command to go on
#   4 checkpoint averaging → ${dir}/final (released layout)
#   5 decoding + scoring of ${decode_sets}
# It reads the recipe's variables: stage stop_stage data dir nj cmvn_max_utts use_shards
# shard_size pretrained vocab_size train_config ngpu max_steps num_avg avg_mode decode_sets
# decode_mode chunk_size left_context_size right_context_size, and its log function.
# Finished work is marked with .done files, so a rerun picks up where the last one stopped.

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
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
