#!/bin/bash
# usage: rus.sh IPC ITS THREADS ROUNDS
cd "$(dirname "$0")/../../.."
for r in $(seq 1 $4); do for impl in reference ours; do
 PYTHONPATH=$PWD /usr/bin/time -f "$impl ipc$1 r$r user %U sys %S wall %e minflt %R maxrss_kb %M" nice -n 5 /work/main/.venv/bin/python benchmarks/peers/dc_reference.py --one $impl --method dm --ipc-one $1 --iterations $2 --threads $3 --save /tmp/$impl.pt 2>&1 | grep -v Warn | grep -E "impl|user"
done; done
