#!/usr/bin/env bash
# Throughput on a CUDA machine: the batch-8 comparison of issue 8, a batch-64 run (a GPU is idle at
# batch 8) and torch.compile, each bounded in time. Needs torch, jax (CUDA) and keras importable.
# Usage: bash benchmarks/gpu_throughput.sh OUTDIR
set -u
out=${1:?usage: gpu_throughput.sh OUTDIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
python3 -c "import keras, jax, torch; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices(), 'torch', torch.__version__)" >>"$out/gpu.txt" 2>&1
run() {
  local name=$1 limit=$2
  shift 2
  timeout "$limit" python3 "$here/bench_throughput.py" --json "$out/$name.json" "$@" \
    >"$out/$name.txt" 2>"$out/$name.err"
  echo "$name: exit $?"
  grep -v '^round' "$out/$name.txt" | tail -14
}
run gpu_b8 260 --candidates torch-eager,torch-cl,torch-eager:bf16,keras-torch,keras-jax,keras-torch:bf16,keras-jax:bf16 \
  --rounds 5 --steps 20 --warmup 5
run gpu_b64 150 --batch 64 --candidates torch-eager,torch-cl,torch-eager:bf16,keras-torch,keras-jax,keras-jax:bf16 \
  --rounds 3 --steps 10 --warmup 3
run gpu_compile 150 --candidates torch-eager,torch-compile --rounds 3 --steps 20 --warmup 3
