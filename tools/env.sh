# Source me: preload jemalloc so that CPU runs do not spend half their time in page faults
# (large conv activations are mapped and freed every step with glibc malloc).
for lib in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2; do
  if [ -e "$lib" ]; then
    export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
    export MALLOC_CONF="retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1"
    break
  fi
done
