#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian/Ubuntu machine for cspine-node:
#   - Debian packages the node and its tests use (when run as root and a package is missing):
#     redis-server (Celery broker for tests), orthanc + orthanc-dicomweb (test PACS / DICOMweb archive),
#     dcmtk (storescu/storescp/dsrdump peers), dicom3tools (dciodvfy validator), nginx-light (OHIF proxy test),
#     chromium (+ nodejs/npm when missing) for the OHIF viewer test
#   - a virtual environment in .venv with the CPU build of torch 2.13.0 and the package with its test extra,
#     and the package's own sources byte-compiled.
# Set CSPINE_SKIP_APT=1 to skip the Debian part (e.g. no root; the demo itself needs none of these packages).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(redis-server orthanc orthanc-dicomweb dcmtk dicom3tools nginx-light chromium)
if [ "${CSPINE_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # the OHIF viewer test fetches @ohif/app and playwright-core with npm
    command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    # The CPU build first, so that nothing later pulls a multi-GB CUDA build. Where PyPI's default wheel is
    # a CUDA build, point TORCH_INDEX_URL at PyTorch's CPU wheel index.
    .venv/bin/python -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
.venv/bin/python -m pip install -q -e '.[test]'
# Byte-compile the node's own sources, as pip does for what it installs into site-packages: an editable install
# leaves them as .py, and where bytecode is not written at run time (PYTHONDONTWRITEBYTECODE, a read-only checkout)
# every start of `serve`, its worker and `cspine-node analyze` would compile them again (~0.2 s of CPU each, measured).
.venv/bin/python -m compileall -q -j 0 node pipelines models >/dev/null
echo "setup: ready (.venv/bin/cspine-node)"
