# scripts/lib/common.sh: what scripts/run, scripts/test and scripts/bench share: installing
# what is missing (Debian packages, the pinned npm clients) and building a configuration.
# Sourced, not run.

NEDB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages the build and the tests need. Checked one by one with dpkg, so a machine
# that has them all never touches apt.
NEDB_APT_PACKAGES=(
    build-essential cmake ninja-build pkg-config git
    clang libclang-rt-14-dev
    libbson-dev libmongoc-dev libevent-dev libsodium-dev libpcre2-dev libicu-dev libcriterion-dev
    python3 python3-pymongo
    tzdata
)

nedb_log() { printf '==> %s\n' "$*" >&2; }

nedb_install_apt() {
    local missing=() p
    for p in "${NEDB_APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    # node and npm: any install will do (the machine image ships NodeSource's); Debian's
    # own packages otherwise.
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        nedb_log "installing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
            "${missing[@]}"
    fi
}

# npm ci of the pinned clients, skipped when node_modules already matches the lock file.
nedb_install_npm() {
    local stamp="$NEDB_ROOT/node_modules/.nedb-lock-stamp"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$NEDB_ROOT/package-lock.json"; then
        return 0
    fi
    nedb_log "npm ci (pinned test clients)"
    (cd "$NEDB_ROOT" && npm ci --no-audit --no-fund --loglevel=error) &&
        cp "$NEDB_ROOT/package-lock.json" "$stamp"
}

# nedb_build <name> [cmake options...]: configures build/<name> once and builds it.
nedb_build() {
    local name=$1
    shift
    local dir="$NEDB_ROOT/build/$name"
    if [ ! -f "$dir/build.ninja" ]; then
        cmake -S "$NEDB_ROOT" -B "$dir" -G Ninja "$@" >/dev/null
    else
        cmake "$dir" "$@" >/dev/null
    fi
    nedb_log "building $name"
    cmake --build "$dir" -j "$(nproc)"
}
