#!/usr/bin/env bash
# Sets up everything voxgate needs on a fresh Debian machine: system tools,
# a .venv with torch installed first (coqui-tts must not pull another torch),
# then the project with its test extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql: the shared store for several machines, and the throwaway cluster the tests start (tests/pg.py);
# nginx: the reverse proxy that sends the portal's downloads (tests/nginx.py); wrk: bench_portal's load
APT_PACKAGES=(ffmpeg espeak-ng sox libsndfile1 libfribidi0 chromium fonts-noto-core postgresql nginx wrk)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt)
STAMP=.venv/.voxgate-setup
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ requirements/constraints.txt -nt "$STAMP" ]; then
  echo "setup: installing Python packages into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U "pip<27"
  "${PIP[@]}" torch==2.14.1
  "${PIP[@]}" 'setuptools<81' wheel Cython numpy
  "${PIP[@]}" -e '.[test,bench]'
  # resemblyzer pins the obsolete `typing` backport; its real needs are met above.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps resemblyzer==0.1.4 webrtcvad==2.0.10
  touch "$STAMP"
fi
echo "setup: ready"
