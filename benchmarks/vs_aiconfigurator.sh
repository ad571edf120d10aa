#!/usr/bin/env bash
# clustersim plan vs NVIDIA aiconfigurator on the same question (issue 15):
# DeepSeek-V3 on 32 H200 SXM, ISL 4000 / OSL 500, TTFT <= 2 s, TPOT <= 50 ms.
#
# Installs aiconfigurator from the package index into its own venv (created once under a
# cache directory and reused), times both tools in alternating runs (wall and peak RSS),
# prints both best answers side by side, evaluates aiconfigurator's best layouts in our
# planner and simulator, and our best layout in aiconfigurator. What the numbers mean and
# why they differ: docs/vs_aiconfigurator.md. The work is done by benchmarks/vs_aiconfigurator.py.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: benchmarks/vs_aiconfigurator.sh [options]

  --venv DIR        aiconfigurator's venv (default: $CLUSTERSIM_CACHE or
                    ${XDG_CACHE_HOME:-~/.cache}/clustersim, then /aiconfigurator-VERSION);
                    created with `python3 -m venv` + `pip install aiconfigurator==VERSION`
                    when it has no aiconfigurator of that version, reused otherwise
  --aic-version V   aiconfigurator version to install (default 0.12.0)
  --runs N          timed runs of each tool, alternated (default 2)
  --ladder          also run aiconfigurator's search with our assumptions switched on one by
                    one (MTP, no correction factors, prefill batching, balanced routing,
                    BF16 KV), and ours with theirs: about 8-10 more minutes on 2 cores
  --steps           also price a few single decode steps and prefill iterations in both models
                    (about 3-7 more minutes: 36 aiconfigurator estimates)
  --no-layouts      skip the cross-evaluation of layouts (timing and answers only)
  --out DIR         keep aiconfigurator's experiment files here (default: a temp dir)
  --json            print the result as JSON
  --dry-run         print what would be installed and run, install and run nothing
  -h, --help        this text

Runs from any directory; our side runs this checkout (PYTHONPATH), no install needed.
Takes about 2-3 minutes on 2 cores with the defaults (most of it aiconfigurator).
EOF
}

AIC_VERSION=0.12.0
VENV=""
DRY=0
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --venv) VENV=${2:?--venv needs a directory}; shift 2 ;;
    --aic-version) AIC_VERSION=${2:?--aic-version needs a version}; shift 2 ;;
    --runs|--out) PASS+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --ladder|--steps|--no-layouts|--json) PASS+=("$1"); shift ;;
    --dry-run) DRY=1; shift ;;
    *) echo "vs_aiconfigurator.sh: unknown option $1 (valid: --venv --aic-version --runs --ladder --steps --no-layouts --out --json --dry-run --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CLUSTERSIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clustersim}
VENV=${VENV:-$CACHE/aiconfigurator-$AIC_VERSION}
PY=${PYTHON:-python3}
AIC="$VENV/bin/aiconfigurator"

installed_version() {
  "$VENV/bin/python" -c 'from importlib.metadata import version; print(version("aiconfigurator"))' 2>/dev/null || true
}

if [ "$DRY" = 1 ]; then
  if [ -x "$AIC" ] && [ "$(installed_version)" = "$AIC_VERSION" ]; then
    echo "reuse: $VENV (aiconfigurator $AIC_VERSION)"
  else
    echo "install: $PY -m venv $VENV && $VENV/bin/pip install aiconfigurator==$AIC_VERSION"
  fi
  echo "run: cd $ROOT && PYTHONPATH=$ROOT $PY benchmarks/vs_aiconfigurator.py --aic $AIC ${PASS[*]:-}"
  exit 0
fi

if [ ! -x "$AIC" ] || [ "$(installed_version)" != "$AIC_VERSION" ]; then
  echo "installing aiconfigurator $AIC_VERSION into $VENV ..." >&2
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "aiconfigurator==$AIC_VERSION"
fi
echo "aiconfigurator $(installed_version) from $VENV" >&2

cd "$ROOT"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" benchmarks/vs_aiconfigurator.py --aic "$AIC" ${PASS[@]+"${PASS[@]}"}
