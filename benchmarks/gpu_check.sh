#!/bin/bash
# The GPU checks, in one run on a lent GPU machine (the figures in benchmarks/results/gpu/ and the README):
#   1. benchmarks/train_throughput.py: compute vs end to end, fp32 and bf16 autocast, loader workers 0 and 8;
#   2. the trainer (python -m mmrep.train) on CUDA at batch 64 and 256, one process, 3 epochs (the last one timed);
#   3. the same under torchrun (DDP, NCCL), 1 process per GPU;
#   4. resume on CUDA: the batch-64 run continued for a second epoch from its last.pt;
#   5. the policy loop on the device: benchmarks/policy_throughput.py with the learner and the encoders of
#      all sub-envs batched on CUDA (pinned host buffers), 2 and $POLICY_WORKERS workers, beside encoding
#      in the workers; then a short PPO run of the fused row on CUDA (`mmrep policy train
#      +paper=fused_insertion device=cuda`). This step needs PyBullet (pip install -e '.[rl]').
# Everything lands in one JSON, $OUT/gpu_check.json.
# QUICK=1: the throughput benchmark (4 loader workers), one trainer run (batch 64, 1 epoch) and step 5,
# each under a timeout, in under 10 minutes:
#     QUICK=1 DATA=.gpu/loader_data OUT=outputs/gpu bash benchmarks/gpu_check.sh
# It reads a collected dataset (DATA; make one with
#   python -c "from sim.collect import CollectConfig, collect; collect(CollectConfig(episodes=6, \
#     out='.gpu/loader_data', seed=5, env={'max_steps': 100}))"
# ) so the GPU machine needs no PyBullet: mmrep's training path imports none.
#     DATA=.gpu/loader_data OUT=outputs/gpu bash benchmarks/gpu_check.sh
set -u
DATA=${DATA:-.gpu/loader_data}
OUT=${OUT:-outputs/gpu}
PY=${PY:-python3}
BATCHES=${BATCHES:-60}    # timed batches per throughput figure
EXTRA=${EXTRA:-}          # more trainer overrides (a quick CPU dry run: EXTRA=max_batches_per_epoch=3)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
$PY -c "import os, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'cpus', os.cpu_count())" | tee -a "$OUT/machine.txt"

# a rerun on the same machine starts clean: the trainer refuses an out= folder written with another configuration
rm -rf /tmp/gpu_b64 /tmp/gpu_b256 /tmp/gpu_ddp /tmp/gpu_resume /tmp/gpu_policy
QUICK=${QUICK:-0}
POLICY_WORKERS=${POLICY_WORKERS:-8}
POLICY_STEPS=${POLICY_STEPS:-8192}   # env steps of the short PPO run
DEVICE=${DEVICE:-cuda}               # cpu: a dry run of step 5 on a machine without a GPU
POLICY_TIMEOUT=${POLICY_TIMEOUT:-200}  # seconds for each of step 5's two commands
BEFORE_POLICY=${BEFORE_POLICY:-}     # a command run before step 5 (a bare machine: wait for its PyBullet build)

if [ "$QUICK" = 1 ]; then
  timeout 120 $PY benchmarks/train_throughput.py --data "$DATA" --batches $BATCHES --workers 4 --out "$OUT/train_throughput_w4.json" \
    || echo "train throughput (4 loader workers) failed or ran past 120 s"
  timeout 150 $PY -m mmrep.train data=$DATA max_val_batches=5 progress=false $EXTRA epochs=1 batch_size=64 \
    ckpt_every_steps=1000000 out=/tmp/gpu_b64 > /tmp/gpu_b64.log 2>&1 || { echo "trainer failed"; tail -20 /tmp/gpu_b64.log; }
else
for w in 0 8; do
  timeout 180 $PY benchmarks/train_throughput.py --data "$DATA" --batches $BATCHES --workers $w --out "$OUT/train_throughput_w$w.json" \
    || echo "train throughput ($w loader workers) failed or ran past 180 s"
done

T="data=$DATA max_val_batches=5 progress=false $EXTRA"
for bs in 64 256; do
  timeout 180 $PY -m mmrep.train $T epochs=3 batch_size=$bs ckpt_every_steps=1000000 out=/tmp/gpu_b$bs > "/tmp/gpu_b$bs.log" 2>&1 \
    || { echo "trainer batch $bs failed"; tail -20 "/tmp/gpu_b$bs.log"; }
done
timeout 180 $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m mmrep.train $T epochs=3 batch_size=64 \
  ckpt_every_steps=1000000 out=/tmp/gpu_ddp > /tmp/gpu_ddp.log 2>&1 || { echo "torchrun failed"; tail -20 /tmp/gpu_ddp.log; }
# killed (SIGKILL) once its first checkpoint is on disk, then the same command again
R="$PY -m mmrep.train $T epochs=2 batch_size=64 ckpt_every_steps=5 out=/tmp/gpu_resume"
$R > /tmp/gpu_resume.log 2>&1 &
pid=$!
while [ ! -f /tmp/gpu_resume/last.pt ] && kill -0 $pid 2>/dev/null; do sleep 0.1; done
kill -9 $pid 2>/dev/null && echo "killed after the first checkpoint" | tee -a /tmp/gpu_resume.log
$PY -c "import json, torch; s = json.loads(torch.load('/tmp/gpu_resume/last.pt', weights_only=True, map_location='cpu')['state']); print('resuming from step', s['step'], 'epoch', s['epoch'])" | tee -a /tmp/gpu_resume.log
timeout 180 $R >> /tmp/gpu_resume.log 2>&1 || { echo "resume failed"; tail -20 /tmp/gpu_resume.log; }
fi

# 5. the policy loop on the device
[ -n "$BEFORE_POLICY" ] && eval "$BEFORE_POLICY"
timeout $POLICY_TIMEOUT $PY benchmarks/policy_throughput.py --workers 2 $POLICY_WORKERS --encode-in main workers --device $DEVICE \
  --steps 2048 --cpu-steps 20 --out "$OUT/policy_throughput_cuda.json" || echo "policy throughput failed"
rm -rf /tmp/gpu_policy
timeout $POLICY_TIMEOUT $PY -m mmrep.cli policy train +paper=fused_insertion device=$DEVICE n_envs=$POLICY_WORKERS total_steps=$POLICY_STEPS \
  eval_episodes=4 eval_every_steps=$POLICY_STEPS ckpt_every_steps=$POLICY_STEPS progress=false out=/tmp/gpu_policy \
  > /tmp/gpu_policy.log 2>&1 || { echo "policy run failed"; tail -20 /tmp/gpu_policy.log; }

$PY - "$OUT" "$DATA" <<'EOF'
import json, sys
from pathlib import Path
import torch
from mmrep.data import MultimodalDataset
runs = {"train_samples": len(MultimodalDataset(sys.argv[2], split="train"))}
for name in ("gpu_b64", "gpu_b256", "gpu_ddp", "gpu_resume"):
    f = Path("/tmp") / name / "metrics.json"
    if f.exists():
        runs[name] = json.loads(f.read_text())
for name in ("gpu_b64", "gpu_b256", "gpu_ddp", "gpu_resume"):
    log = Path("/tmp") / f"{name}.log"
    if log.exists():
        runs.setdefault("logs", {})[name] = log.read_text()[-3000:]
Path(sys.argv[1], "trainer_runs.json").write_text(json.dumps(runs, indent=1))
# one JSON with everything: machine, throughput benchmarks, trainer runs, the policy loop and run
out = Path(sys.argv[1])
check = {"machine": (out / "machine.txt").read_text() if (out / "machine.txt").exists() else None,
         "trainer_runs": runs}
from sim.provenance import provenance
check["provenance"] = provenance()  # the commit, package versions and CPU of this machine
for f in sorted(out.glob("*_throughput*.json")):
    check[f.stem] = json.loads(f.read_text())
pol = Path("/tmp/gpu_policy")
if (pol / "eval.jsonl").exists():
    ck = torch.load(pol / "checkpoint.pt", weights_only=True, map_location="cpu") if (pol / "checkpoint.pt").exists() else {}
    check["policy_run"] = {"evals": [json.loads(x) for x in (pol / "eval.jsonl").read_text().splitlines()],
                           "num_timesteps": ck.get("num_timesteps"), "train_seconds": ck.get("train_seconds")}
if Path("/tmp/gpu_policy.log").exists():
    check.setdefault("policy_run", {})["log_tail"] = Path("/tmp/gpu_policy.log").read_text()[-3000:]
(out / "gpu_check.json").write_text(json.dumps(check, indent=1))
print("wrote", out / "gpu_check.json")
for k, v in runs.items():
    if isinstance(v, dict) and "final" in v:
        print(k, v["device"], "processes", v["processes"], "batch", v["config"]["batch_size"],
              f"train {v['final']['train_seconds']:.1f} s", f"{runs['train_samples'] / v['final']['train_seconds']:.0f} samples/s")
EOF
