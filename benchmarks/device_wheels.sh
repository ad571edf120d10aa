#!/bin/bash
# Prepare the wheels a device call carries (carry: [".whl"]): the lent machine has no network, and its
# image runs its own python3 (3.12 on the H200 image of 2026-12-02) without pydantic.
#   bash benchmarks/device_wheels.sh          # for the image's Python 3.12
#   bash benchmarks/device_wheels.sh 3.11     # another Python
# .whl/: simpy (pure Python); .whl/opt/: pydantic, pydantic-core, typing-extensions, annotated-types,
# typing-inspection and PyYAML built for that Python (device_common.sh installs them only where the
# image lacks pydantic). Ground-truth sets need them; the calibration suites do not.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
PYV=${1:-3.12}
rm -rf .whl
mkdir -p .whl/opt
python3 -m pip download -q --no-deps -d .whl simpy
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl/opt \
  pydantic pydantic-core typing-extensions annotated-types typing-inspection pyyaml
ls .whl .whl/opt
