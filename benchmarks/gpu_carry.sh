#!/bin/sh
# What a lent GPU machine lacks to run benchmarks/bench_gpu.py, packed into .gpu/ (git-ignored)
# within the 64 MiB a device call may carry.
#
# The machine has python 3.12 with torch, numpy, scipy, pandas, scikit-image, scikit-learn,
# matplotlib, rich, httpx and the like, and reaches no package registry. Missing: nnU-Net and its
# own helpers, SimpleITK, nibabel, blosc2 (with ndindex and numexpr) and connected-components-3d.
# Their wheels come to about 69 MB, over the limit; SimpleITK's alone is 53 MB, so it travels
# unpacked and xz-compressed (about 29 MB), and the rest as wheels.
#
#   sh benchmarks/gpu_carry.sh [PYTHON_VERSION]     # default 3.12, the GPU machine's
#
# then, on the GPU machine (device tool: carry [".gpu"]):
#   python3 -m pip install -q --no-deps --no-index --target .gpu/site .gpu/wheels/*.whl &&
#   python3 -c "import tarfile; tarfile.open('.gpu/simpleitk.tar.xz').extractall('.gpu/site')" &&
#   PYTHONPATH=.gpu/site:src python3 benchmarks/bench_gpu.py --workspace /tmp/bench-gpu --json $OUT/gpu.json
set -eu
VERSION=${1:-3.12}
PIP=${PIP:-.venv/bin/python -m pip}
OUT=.gpu
rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/simpleitk"
BINARY="--no-deps --only-binary=:all: --python-version $VERSION --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform any"
# shellcheck disable=SC2086
$PIP download -q $BINARY -d "$OUT/wheels" nnunetv2==2.8.1 nibabel blosc2 ndindex numexpr \
    connected-components-3d batchgenerators batchgeneratorsv2 dynamic-network-architectures yacs
$PIP wheel -q --no-deps -w "$OUT/wheels" acvl-utils==0.2.6  # published as source only; pure python
# shellcheck disable=SC2086
$PIP download -q $BINARY -d "$OUT/simpleitk" SimpleITK==2.5.7
python3 -m zipfile -e "$OUT"/simpleitk/*.whl "$OUT/simpleitk/site"
tar -C "$OUT/simpleitk/site" -cf - . | xz -6 -T0 > "$OUT/simpleitk.tar.xz"
rm -rf "$OUT/simpleitk"
du -cb "$OUT"/wheels/*.whl "$OUT/simpleitk.tar.xz" | tail -1 |
    awk '{ printf "%s: %.1f MiB to carry (limit 64 MiB, with the working tree)\n", "'"$OUT"'", $1 / 1048576 }'
