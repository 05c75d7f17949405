#!/bin/bash
# Interleaved old/new floor runs; JSON per run (docs/PERFORMANCE.md, "Old and new floor").
# $B/shardcast-bench-old: cargo build --release -p shardcast-bench at commit 2268e59;
# $B/shardcast-bench-new: the same at commit 5019e99 (the floor on shardcast-rtp).
cd "$(dirname "$0")"
B=${B:-/work/targets/bench-bins}
for round in 1 2 3 4; do  # run as rounds 1-2, then 3, then 4
  for cfg in "portable gcm 5000 10" "portable gcm256 5000 10" "portable cm 5000 10" "sendmmsg gcm 5000 10" "portable gcm256 1000 50"; do
    set -- $cfg
    for v in old new; do
      out=r$round-$v-$1-$2-$3x$4.json
      echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg) $out"
      $B/shardcast-bench-$v floor --io $1 --profile $2 --rate $3 --fanout $4 --duration 8 --warmup 2 \
        --server-cpus 0 --harness-cpus 1 --repeat 3 --json $out > /dev/null 2>>log.txt
    done
  done
done
echo done
