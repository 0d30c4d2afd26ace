# Source me: preload jemalloc so that CPU runs do not spend half their time in page faults
# (large conv activations are mapped and freed every step with glibc malloc).
# Freed pages are kept (no decay: purging them costs as much as glibc's faults), and
# lg_extent_max_active_fit:10 lets a kept extent be split for requests down to 1/1024 of its
# size. Without it, training with dynamic batch shapes grew by ~400 MiB per 50 steps (22 GB
# and an OOM kill after 2000 steps of the default recipe); with it the resident set stays flat
# (2.2 GB for the default recipe) at the same speed (~165 audio s/s vs ~115 with glibc).
for lib in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2; do
  if [ -e "$lib" ]; then
    export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
    export MALLOC_CONF="background_thread:true,retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:10"
    break
  fi
done
# OpenMP threads that sleep instead of spinning at barriers: on a shared machine spinning
# threads make a 2-thread training step up to 10x slower (bench/README.md); an explicit
# setting wins.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
