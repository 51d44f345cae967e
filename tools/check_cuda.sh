#!/usr/bin/env bash
# Compile-checks every pyadr/gpu/kernels/*.cu with nvcc: each file, with every template
# instantiation the loader (pyadr/gpu/_kernels.py) asks NVRTC for, is compiled to PTX for sm_90 and
# to an object for a baseline architecture (sm_75: the oldest CUDA 13 supports), as C++17, with
# warnings as errors. Exits non-zero on any error; exits 0 with a message when nvcc is absent.
# Usage: tools/check_cuda.sh   (NVCC=/path/to/nvcc and PYTHON=python3 may be set)
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-$(command -v nvcc || true)}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [ -z "$NVCC" ]; then
  echo "check_cuda: nvcc not found; skipping the CUDA compile check"
  exit 0
fi
KDIR="$ROOT/src/pyadr/gpu/kernels"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "check_cuda: $("$NVCC" --version | tail -1)"
status=0
shopt -s nullglob
files=("$KDIR"/*.cu)
if [ ${#files[@]} -eq 0 ]; then
  echo "check_cuda: no .cu files in $KDIR"
  exit 1
fi
for cu in "${files[@]}"; do
  base="$(basename "$cu")"
  src="$TMP/${base%.cu}_inst.cu"
  echo "#include \"$cu\"" > "$src"
  if [ -n "$PYTHON" ]; then
    # One host-side reference per name expression forces nvcc to instantiate the kernel template.
    if ! PYTHONPATH="$ROOT" "$PYTHON" - "$base" >> "$src" <<'PY'
import sys
from pyadr.gpu import _kernels as k
for i, expr in enumerate(k.name_expressions(sys.argv[1])):
    print(f"void* pyadr_check_instance_{i} = (void*)&{expr};")
PY
    then
      echo "check_cuda: FAILED to list the name expressions of $base"; status=1; continue
    fi
  fi
  n_inst=$(grep -c pyadr_check_instance "$src" || true)
  ok=1
  "$NVCC" -std=c++17 -arch=sm_90 --ptx -Werror all-warnings -o "$TMP/${base%.cu}.ptx" "$src" || ok=0
  "$NVCC" -std=c++17 -arch=sm_75 -c -Werror all-warnings -o "$TMP/${base%.cu}.o" "$src" || ok=0
  if [ $ok -eq 1 ]; then
    echo "check_cuda: ok      $base ($n_inst instantiations; sm_90 ptx, sm_75 object)"
  else
    echo "check_cuda: FAILED  $base"; status=1
  fi
done
exit $status
