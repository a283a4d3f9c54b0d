#!/usr/bin/env bash
# Build the images of the containers provider and of docker/compose.yaml.
#
#   docker/build-images.sh            build what is missing or out of date
#   docker/build-images.sh --force    rebuild every image
#
# Images: bullproof/redis (Redis and Sentinel), bullproof/postgres and
# bullproof/toxiproxy, all tagged :latest. Each Dockerfile takes its base
# image as the build argument BASE.
#
# BULLPROOF_BASE=debian (the default) makes that base from Debian's packages:
# debootstrap writes a minimal root file system with redis-server,
# redis-sentinel and postgresql-15 in it, and `docker import` turns it into
# bullproof/base:bookworm. Nothing is pulled from an image registry, so this
# works where none is reachable. BULLPROOF_BASE=official builds on the
# official images named in each Dockerfile instead, pulled from the registry.
#
# The script is idempotent: an image is rebuilt only when the files it is
# built from changed (a digest of them is kept in the label bullproof.source).
# The Toxiproxy image takes the server that `make setup` built in
# .tools/bin/toxiproxy-server.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
mode="${BULLPROOF_BASE:-debian}"
suite="${BULLPROOF_DEBIAN_SUITE:-bookworm}"
mirror="${BULLPROOF_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base_image="bullproof/base:$suite"
base_packages="redis-server,redis-sentinel,postgresql-15"
toxiproxy_bin="${BULLPROOF_TOXIPROXY:-$root/.tools/bin/toxiproxy-server}"
force=0

case "${1:-}" in
"") ;;
--force) force=1 ;;
*)
    echo "usage: $0 [--force]" >&2
    exit 2
    ;;
esac

say() { echo "images: $*"; }
die() {
    echo "images: $*" >&2
    exit 1
}

if ! docker info >/dev/null 2>&1; then
    die "no Docker engine answers; start one with 'docker/engine.sh start'"
fi

# The digest of the files an image is built from, to tell a stale image.
digest() {
    cat "$@" | sha256sum | cut -c1-16
}

# Whether image $1 exists and carries source digest $2.
current() {
    local label
    label="$(docker image inspect -f '{{ index .Config.Labels "bullproof.source" }}' \
        "$1" 2>/dev/null)" || return 1
    [[ $force -eq 0 && "$label" == "$2" ]]
}

build_base() {
    local sum
    sum="$(echo "$suite $mirror $base_packages" | sha256sum | cut -c1-16)"
    if current "$base_image" "$sum"; then
        say "$base_image is up to date"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 ||
        die "debootstrap not found; install it with 'apt-get install -y debootstrap'"
    local rootfs t0
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/bullproof-rootfs-XXXXXX")"
    t0=$SECONDS
    say "debootstrap $suite with $base_packages (about a minute)"
    debootstrap --variant=minbase --include="$base_packages" \
        "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
        {
            tail -n 30 "$rootfs.log" >&2
            rm -rf "$rootfs"
            die "debootstrap failed; full log in $rootfs.log"
        }
    rm -f "$rootfs.log"

    # The package's own cluster and the downloaded packages are dead weight:
    # bullproof initialises its own data directories.
    rm -rf "$rootfs/var/lib/postgresql/15/main" "$rootfs/etc/postgresql/15/main" \
        "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    say "debootstrap done in $((SECONDS - t0)) s; importing"
    tar -C "$rootfs" -c . | docker import \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "LABEL bullproof.source=$sum" \
        - "$base_image" >/dev/null
    rm -rf "$rootfs"
    say "$base_image built in $((SECONDS - t0)) s"
}

# build NAME DOCKERFILE CONTEXT [FILES THE IMAGE IS BUILT FROM...]
build() {
    local name="$1" dockerfile="$2" context="$3"
    shift 3
    local image="bullproof/$name:latest" sum args=()
    if [[ "$mode" == debian ]]; then
        args+=(--build-arg "BASE=$base_image")
        sum="$(digest "$dockerfile" "$@" <(docker image inspect -f '{{.Id}}' "$base_image"))"
    else
        sum="$(digest "$dockerfile" "$@" <(echo official))"
    fi
    if current "$image" "$sum"; then
        say "$image is up to date"
        return
    fi
    local t0=$SECONDS
    # Host networking: the engine has no bridge, and a build that installs
    # nothing needs no network anyway.
    # The legacy builder: BuildKit needs the buildx plugin, which Debian's
    # docker.io does not ship. Its deprecation notice is shown only on failure.
    local out
    out="$(DOCKER_BUILDKIT=0 docker build --quiet --network host "${args[@]}" \
        --label "bullproof.source=$sum" -t "$image" -f "$dockerfile" "$context" \
        2>&1)" || die "building $image failed: $out"
    say "$image built in $((SECONDS - t0)) s"
}

case "$mode" in
debian) build_base ;;
official) say "building on the official images from the registry" ;;
*) die "BULLPROOF_BASE must be debian or official, not '$mode'" ;;
esac

build redis "$here/redis.Dockerfile" "$here" "$here/redis-entrypoint.sh"
build postgres "$here/postgres.Dockerfile" "$here" "$here/postgres-entrypoint.sh"

[[ -x "$toxiproxy_bin" ]] ||
    die "$toxiproxy_bin not found; run 'make setup', which builds it"
context="$(mktemp -d "${TMPDIR:-/tmp}/bullproof-toxiproxy-XXXXXX")"
trap 'rm -rf "$context"' EXIT
cp "$toxiproxy_bin" "$context/toxiproxy-server"
cp "$here/toxiproxy-entrypoint.sh" "$here/toxiproxy.json" "$context/"
build toxiproxy "$here/toxiproxy.Dockerfile" "$context" \
    "$context/toxiproxy-server" "$here/toxiproxy-entrypoint.sh" "$here/toxiproxy.json"

# Images replaced by a rebuild keep their label but lose their tag.
docker image prune --force --filter label=bullproof.source >/dev/null
say "done"
