#!/usr/bin/env bash
# Install xvfa_ext with its dependencies, detectron2 and detrex included, into python3's environment
# (or $PYTHON's).
#
#   bash tools/install.sh                 # torch, torchvision, xvfa_ext, then detectron2 and detrex
#   bash tools/install.sh --core-only     # without detectron2 and detrex (their tests are skipped)
#
# torch and torchvision come from PyPI as one matching pair. --isolated makes pip ignore local pip
# configuration (config files, PIP_FIND_LINKS) that may offer a CPU-only torch wheel with which
# PyPI's torchvision fails to import. setuptools stays below 81: detrex imports pkg_resources.
#
# detectron2 and detrex are on no package registry; they are built from source as their own guides
# do, editable and without build isolation against the installed torch, at pinned commits: detrex at
# DETREX_COMMIT and detectron2 at the commit that detrex pins. The sources are the local checkouts
# named by DETECTRON2_SRC and DETREX_SRC (what an offline machine uses), or else clones of the
# official repositories in third_party/ (git-ignored). An installation already importable is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DETECTRON2_URL=https://github.com/facebookresearch/detectron2.git
DETREX_URL=https://github.com/IDEA-Research/detrex.git
DETECTRON2_COMMIT=70f454304e1a38378200459dd2dbca0f0f4a5ab4  # detrex's detectron2 submodule
DETREX_COMMIT=e244e6c3da3e84566728c52c21fb061d23ce0e2f
PIP=("$PYTHON" -m pip install --isolated --disable-pip-version-check)

core_only=0
for arg in "$@"; do
    case "$arg" in
        --core-only) core_only=1 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option '$arg' (expected --core-only)" >&2; exit 2 ;;
    esac
done

# Named checkouts are checked before anything is installed.
for var in DETECTRON2_SRC DETREX_SRC; do
    dir=${!var:-}
    name=$([ "$var" = DETREX_SRC ] && echo detrex || echo detectron2)
    if [ -n "$dir" ] && { [ ! -f "$dir/setup.py" ] || [ ! -d "$dir/$name" ]; }; then
        echo "install.sh: $var=$dir is not a $name checkout (no setup.py and $name/ there)" >&2
        exit 2
    fi
done

"${PIP[@]}" "torch>=2.1" "torchvision>=0.16" "setuptools<81"
"${PIP[@]}" -e ".[test]"
"$PYTHON" - <<'PY'
import torch, torchvision
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
import xvfa_ext
print(f"xvfa_ext ready: torch {torch.__version__}, torchvision {torchvision.__version__}")
PY

# The review application's browser tests drive Debian's chromium (through Playwright, the test
# extra). It is installed where apt is available; elsewhere those tests are skipped with the reason.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "install.sh: chromium found, for the browser tests"
elif command -v apt-get >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" != 0 ] && as_root=(sudo -n)
    if "${as_root[@]}" apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || { "${as_root[@]}" apt-get update >/dev/null 2>&1 \
             && "${as_root[@]}" apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }; then
        echo "install.sh: chromium installed, for the browser tests"
    else
        echo "install.sh: note: chromium could not be installed with apt-get; the browser tests will be skipped"
    fi
else
    echo "install.sh: note: no chromium and no apt-get; the browser tests will be skipped"
fi

if [ "$core_only" = 1 ]; then
    echo "install.sh: --core-only: detectron2 and detrex not installed; tests that need them will be skipped"
    exit 0
fi

installed() {  # the folder an importable package comes from, or nothing
    "$PYTHON" -c "import importlib.util, os, sys
spec = importlib.util.find_spec(sys.argv[1])
print(os.path.dirname(spec.origin) if spec and spec.origin else '')" "$1" 2>/dev/null || true
}

# The source folder of NAME: $VAR when set (it must be a checkout), else a clone at COMMIT.
source_of() {
    local name=$1 var=$2 url=$3 commit=$4 dir
    dir=${!var:-}
    if [ -n "$dir" ]; then
        local head
        head=$(git -C "$dir" rev-parse HEAD 2>/dev/null || echo unknown)
        if [ "$head" != "$commit" ]; then
            echo "install.sh: note: $var is at commit $head, the tested one is $commit" >&2
        fi
    else
        dir=third_party/$name
        if [ ! -d "$dir/.git" ]; then
            GIT_TERMINAL_PROMPT=0 git clone --quiet "$url" "$dir" >/dev/null 2>&1 || { rm -rf "$dir"; return 1; }
        fi
        git -C "$dir" checkout --quiet "$commit" || return 1
    fi
    echo "$dir"
}

missing=()
for name in detectron2 detrex; do
    if [ -n "$(installed "$name")" ]; then
        echo "install.sh: $name already installed, from $(installed "$name")"
        continue
    fi
    if [ "$name" = detectron2 ]; then
        src=$(source_of detectron2 DETECTRON2_SRC "$DETECTRON2_URL" "$DETECTRON2_COMMIT") && rc=0 || rc=$?
    else
        src=$(source_of detrex DETREX_SRC "$DETREX_URL" "$DETREX_COMMIT") && rc=0 || rc=$?
    fi
    if [ "$rc" != 0 ]; then
        missing+=("$name")
        continue
    fi
    echo "install.sh: building $name from $src (detectron2 takes about 10 minutes on 2 CPU cores)"
    "${PIP[@]}" --no-build-isolation -e "$src"
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: ${missing[*]} not installed: no network to clone them and DETECTRON2_SRC/DETREX_SRC" \
        "not set; the core is installed and tests that need them will be skipped" \
        "(rerun with DETECTRON2_SRC=/path/to/detectron2 DETREX_SRC=/path/to/detrex)"
    exit 0
fi
"$PYTHON" -c "from xvfa_ext.dependencies import missing_detectron2; import sys; m = missing_detectron2(); \
print('detectron2 and detrex ready' if not m else 'install.sh: still missing: ' + ', '.join(m)); sys.exit(1 if m else 0)"
