#!/usr/bin/env bash
# The wheels the images install, prepared on the host so that no build reaches a package
# index from inside a container (tests and air-gapped machines). Pinned by constraints.txt.
#
#   scripts/wheelhouse.sh [DIR] [EXTRAS] [MORE REQUIREMENTS...]
#     DIR     default images/wheels (the Dockerfiles' build context copies it)
#     EXTRAS  default runtime,torch,onnx,registry,operator (every image's, CPU variant)
#
# Then: docker build --build-arg PIP_INSTALL_ARGS=--no-index ... (images/*/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-images/wheels}
EXTRAS=${2:-runtime,torch,onnx,registry,operator}
shift $(( $# > 2 ? 2 : $# ))
PIP=${PIP:-.venv/bin/pip}
mkdir -p "$DIR"
# Up to date when the pins, the project's dependencies and the arguments are unchanged.
STAMP=$(cat constraints.txt pyproject.toml <(echo "$EXTRAS $*") | sha256sum | cut -c1-32)
if [ "$(cat "$DIR/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "wheelhouse $DIR is up to date"
  exit 0
fi
start=$(date +%s)
# setuptools and wheel: pip builds jubako itself from the copied sources inside the image.
"$PIP" download -q --only-binary=:all: -d "$DIR" -c constraints.txt setuptools wheel
"$PIP" wheel -q --wheel-dir "$DIR" -c constraints.txt ".[$EXTRAS]" "$@"
# jubako's own wheel is rebuilt from the sources in every image: keep no stale copy.
rm -f "$DIR"/jubako-*.whl
echo "$STAMP" > "$DIR/.stamp"
echo "wheelhouse $DIR: $(ls "$DIR" | grep -c '\.whl$') wheels, $(du -sh "$DIR" | cut -f1), $(( $(date +%s) - start )) s"
