# Sourced by the other scripts: make sure .venv exists and holds the project with
# the extras asked for. Reinstalls only when pyproject.toml changed.
# Usage: ensure_venv EXTRAS   (EXTRAS is "", "embedded", "test" or "dev")

find_python() {
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "receiver needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    extras="$1"
    if [ ! -x .venv/bin/python ]; then
        python=$(find_python)
        "$python" -m venv .venv
    fi
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    stamp=".venv/.installed-${extras:-runtime}"
    wanted=$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' <pyproject.toml)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
        echo "$wanted" >"$stamp"
    fi
}
