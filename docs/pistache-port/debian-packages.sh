# Sourced by check.sh and ci.sh: install_debian_packages PKG... installs
# the Debian packages among PKG that are missing (apt-get update first),
# and does nothing when all are there.
install_debian_packages() {
    local need=() pkg sudo=""
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    ((${#need[@]})) || return 0
    echo "==> installing ${need[*]}"
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}
