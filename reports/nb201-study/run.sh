#!/usr/bin/env bash
# The NAS-Bench-201 seven-method study (README "Which method ranks first on NAS-Bench-201?"): in the root of a
# checkout, with the venv active and CIFAR-10 under data/raw (README "Data sets"):
#
#     cp reports/nb201-study/params.yaml params.yaml && bash reports/nb201-study/run.sh
#
# prepares nb201 once, then runs every (method, seed) chain (search -> derive -> evaluate, the stage commands of
# dvc.yaml) two at a time with one intra-op thread each (2 cores), then the report (README.md here says how the
# committed study was run). The same chains run serially
# with DVC: `dvc repro` on these params (or `dvc exp run` with the -S overrides of reports/nb201-study/README.md).
set -euo pipefail
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
METHODS="itnas darts gdas drnas pcdarts itnas_noattn itnas_notrans"
SEEDS="0 1 2 3 4"
itnas check-params && itnas prepare nb201
mkdir -p logs
chain() {
  local seed=$1 method=$2 t0; t0=$(date +%s)
  { itnas search nb201 "$method" "$seed" && itnas derive nb201 "$method" "$seed" \
    && itnas evaluate nb201 "$method" "$seed"; } > "logs/$method-s$seed.log" 2>&1
  echo "$method s$seed rc=$? $(( $(date +%s) - t0 )) s" >> logs/times
}
export -f chain
for s in $SEEDS; do for m in $METHODS; do echo "$s $m"; done; done | xargs -P 2 -L 1 bash -c 'chain $0 $1'
itnas report --runs-dir runs --out-dir reports/nb201-study
