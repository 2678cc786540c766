#!/usr/bin/env bash
# Build the separate virtual environment that bench/gnn/recbole_runner.py runs in.
#
# Why separate: RecBole 1.2.1 (the reference LightGCN/KGAT/CKE implementations the GNN
# benchmark compares against) needs numpy<2 (it uses np.bool8), scipy<1.12 (LightGCN calls
# dok_matrix._update) and the pre-2.6 torch.load behaviour for its own checkpoints (the
# runner reloads them with weights_only=False). The service's environment stays on numpy 2.
#
# RecBole is installed with --no-deps: of its declared dependencies only the ones it imports
# for dataset loading, training and evaluation are installed (no ray, plotly, thop; tensorboard
# without its server-side deps, since the trainer only writes event files). KGAT also needs DGL:
# 1.0.4 is the newest whose adjacency_matrix(scipy_fmt=...) RecBole's KGAT still works with
# (no DGL for Python 3.11 keeps edge_subgraph(preserve_nodes=); the runner forwards that keyword).
# torch==2.13.0 comes first so that nothing pulls in a CUDA build (on these machines pip finds
# the CPU wheel locally).
#
# Usage: bash bench/gnn/recbole-env.sh [ENV_DIR]   (default: var/recbole-env in the repo root)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
env_dir="${1:-$repo_root/var/recbole-env}"
stamp="$env_dir/.recbole-1.2.1-ready"

if [[ -f "$stamp" ]]; then
    echo "recbole env ready: $env_dir"
    exit 0
fi

python3 -m venv "$env_dir"
pip=("$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
"${pip[@]}" 'numpy==1.26.4' scipy==1.11.4 pandas==2.1.4 scikit-learn==1.5.2 \
    pyyaml==6.0.4 tqdm==4.70.1 colorlog==4.7.2 colorama==0.4.4 texttable==1.7.2 \
    protobuf==7.36.2 absl-py==2.5.1 packaging==26.4 psutil==7.2.2 requests==2.34.2
"${pip[@]}" --no-deps recbole==1.2.1 tensorboard==2.21.0 dgl==1.0.4
DGLBACKEND=pytorch "$env_dir/bin/python" -c \
    'import numpy, dgl, recbole.trainer, recbole.utils.case_study; assert numpy.__version__ < "2"'
touch "$stamp"
echo "recbole env ready: $env_dir"
