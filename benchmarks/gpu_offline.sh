#!/bin/bash
# benchmarks/gpu_check.sh on a GPU machine that has Python with CUDA torch but no package index (a cluster
# node, a lent machine) and no PyBullet wheel for its Python (PyPI has none for 3.12 on Linux).
#   here:  bash benchmarks/gpu_offline.sh prepare   # .whl/: pure-Python wheels + a trimmed PyBullet source (~5 MB)
#          (also make the dataset, see gpu_check.sh; copy the repo, .whl/ and .gpu/ to the machine)
#   there: OUT=outputs/gpu bash benchmarks/gpu_offline.sh run
# `run` installs the wheels into /tmp/site, builds PyBullet (niced, in the background; about as long as
# steps 1-2 on 16 cores is the hope, not a measurement) and runs gpu_check.sh QUICK=1, waiting up to WAIT
# seconds from its start for the build before step 5. BUILD=0 skips the build (PyBullet already importable).
set -u
PY=${PY:-python3}
case "${1:-}" in
prepare)
  PIP=${PIP:-.venv/bin/python -m pip}
  rm -rf .whl /tmp/pbsdist && mkdir -p .whl /tmp/pbsdist
  # the versions installed here (what the tests ran with); --no-deps: torch, numpy, h5py, matplotlib...
  # come with the machine
  pins=$(${VPY:-.venv/bin/python} -c "from importlib.metadata import version as v; print(' '.join(f'{n}=={v(n)}' for n in
('hydra-core', 'omegaconf', 'antlr4-python3-runtime', 'gymnasium', 'farama-notifications', 'stable-baselines3',
 'sb3-contrib', 'pybullet')))") || exit 1
  $PIP wheel -q --no-deps -w .whl ${pins% pybullet==*} || exit 1
  $PIP download -q --no-deps --no-binary :all: -d /tmp/pbsdist "pybullet==${pins##*pybullet==}" || exit 1
  rm -rf /tmp/pbsdist/pbtrim && mkdir -p /tmp/pbsdist/pbtrim && tar xzf /tmp/pbsdist/pybullet-*.tar.gz \
    -C /tmp/pbsdist/pbtrim --strip-components=1
  # keep the C++ sources and the two models the simulation loads (plane, kuka_iiwa): 80 MB -> ~4 MB
  g=/tmp/pbsdist/pbtrim/examples/pybullet/gym
  rm -rf $g/pybullet_envs $g/pybullet_examples $g/pybullet_robots
  find $g/pybullet_data -mindepth 1 -maxdepth 1 ! -name __init__.py ! -name 'plane.urdf' ! -name 'plane.obj' \
    ! -name plane100.obj ! -name checker_blue.png ! -name kuka_iiwa -exec rm -rf {} +
  tar cJf .whl/pbtrim.tar.xz -C /tmp/pbsdist pbtrim && du -sh .whl ;;
run)
  T0=$(date +%s)
  export PYTHONUNBUFFERED=1
  OUT=${OUT:-outputs/gpu}
  mkdir -p "$OUT"
  echo "cores $(nproc)"
  $PY -c "import sys, sysconfig, os; print(sys.version.split()[0], 'Python.h',
os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  # what the wheels above leave to the machine (and setuptools for the PyBullet build): name any missing
  PYTHONPATH=/tmp/site $PY -c "import importlib.util as u; m = [n for n in ('torch', 'numpy', 'h5py', 'matplotlib',
'imageio', 'tqdm', 'yaml', 'cloudpickle', 'pandas', 'rich', 'tensorboard', 'setuptools') if u.find_spec(n) is None];
print('missing on this machine:', ', '.join(m) if m else 'nothing')"
  rm -rf /tmp/pb /tmp/pbsite /tmp/pybullet_built && mkdir -p /tmp/pb
  if [ "${BUILD:-1}" = 0 ]; then echo "skipped (BUILD=0)" > /tmp/pybullet_built; else
    tar xJf .whl/pbtrim.tar.xz -C /tmp/pb
    ( cd /tmp/pb/pbtrim && nice -n 10 $PY -m pip install -q --no-build-isolation --no-deps --no-index --no-compile \
        --target /tmp/pbsite . > /tmp/pybullet_build.log 2>&1
      echo "rc $? after $(( $(date +%s) - T0 )) s" > /tmp/pybullet_built ) &
  fi
  export PYTHONPATH=/tmp/site:/tmp/pbsite:$PWD
  WAIT=${WAIT:-330}
  export BEFORE_POLICY="while [ ! -f /tmp/pybullet_built ] && [ \$(( \$(date +%s) - $T0 )) -lt $WAIT ]; do sleep 2; done
echo pybullet build: \$(cat /tmp/pybullet_built 2>/dev/null || echo not finished); cp /tmp/pybullet_build.log $OUT/ 2>/dev/null
$PY -c 'import pybullet_data, pybullet; print(pybullet.__file__)'"
  QUICK=1 DATA=${DATA:-.gpu/loader_data} OUT=$OUT PY=$PY POLICY_TIMEOUT=${POLICY_TIMEOUT:-140} \
    POLICY_STEPS=${POLICY_STEPS:-4096} bash benchmarks/gpu_check.sh
  echo "total $(( $(date +%s) - T0 )) s" ;;
*) echo "usage: bash benchmarks/gpu_offline.sh prepare|run" >&2; exit 2 ;;
esac
