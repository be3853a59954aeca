#!/bin/sh
# Print one Python interpreter path per line, for each supported version
# (3.11, 3.12, 3.13) that can be found and actually runs.
#
# Lookup order per version 3.X:
#   1. python3.X on PATH, if `python3.X -c pass` succeeds (pyenv shims may
#      exist on PATH but fail for versions that are not globally selected);
#   2. /root/.pyenv/versions/3.X*/bin/python3.X (first match that runs);
#   3. otherwise the version is skipped.
# If no interpreter is found at all, fall back to python3.
#
# Override the version list with PY_VERSIONS="3.11 3.12" and the pyenv root
# with PYENV_ROOT.
set -u

versions="${PY_VERSIONS:-3.11 3.12 3.13}"
pyenv_root="${PYENV_ROOT:-/root/.pyenv}"
found=0

runs() {
    "$1" -c pass >/dev/null 2>&1
}

for v in $versions; do
    exe=""
    if p=$(command -v "python$v" 2>/dev/null) && [ -n "$p" ] && runs "$p"; then
        exe="$p"
    else
        for cand in "$pyenv_root"/versions/"$v"*/bin/"python$v"; do
            [ -x "$cand" ] || continue
            # skip e.g. 3.1x matching a 3.1 glob: require exact major.minor
            if runs "$cand" && [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$v" ]; then
                exe="$cand"
                break
            fi
        done
    fi
    if [ -n "$exe" ]; then
        echo "$exe"
        found=1
    fi
done

if [ "$found" -eq 0 ]; then
    if p=$(command -v python3 2>/dev/null) && runs "$p"; then
        echo "$p"
    else
        echo "find-pythons: no usable Python interpreter found" >&2
        exit 1
    fi
fi
