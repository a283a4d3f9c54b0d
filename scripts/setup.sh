#!/usr/bin/env bash
# Installs what bullproof needs and is missing; quick when everything is there.
#   Debian packages: redis-server, redis-sentinel, PostgreSQL server (apt-get)
#   Toxiproxy server, pinned, built with `go install` into .tools/bin
#   .venv with bullproof and its dev extras
# Each missing prerequisite that cannot be had ends the script with one line
# saying what is missing and how to get it.
set -euo pipefail
cd "$(dirname "$0")/.."

TOXIPROXY_MODULE=github.com/Shopify/toxiproxy/v2
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.12.0}
PYTHON=${PYTHON:-python3}

fail() { echo "setup: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fail "need root to run '$*'; run make setup as root or install sudo"
  fi
}

have_postgres() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }

apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    fail "missing $*; this is not a Debian system: install them by hand"
  say "installing Debian packages: $*"

  # Keep the packages' own services from starting on their default ports.
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
    as_root chmod +x "$guard"
  fi
  trap '[ -n "$guard" ] && as_root rm -f "$guard"' EXIT
  as_root apt-get update -qq >/dev/null ||
    fail "apt-get update failed; check the Debian package sources"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq \
    --no-install-recommends "$@" >/dev/null ||
    fail "apt-get install $* failed"
  [ -n "$guard" ] && as_root rm -f "$guard"
  trap - EXIT
}

# Debian packages.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
have_postgres || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
have_postgres || fail "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin"
id postgres >/dev/null 2>&1 || [ "$(id -u)" != 0 ] ||
  fail "user 'postgres' missing (PostgreSQL refuses root); apt-get install postgresql"

# Toxiproxy server, pinned.
stamp=.tools/toxiproxy-$TOXIPROXY_VERSION
if [ ! -x .tools/bin/toxiproxy-server ] || [ ! -e "$stamp" ]; then
  GO=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$GO" ] || fail "Go (1.22 or newer) is needed to build the Toxiproxy server; apt-get install golang-go or see go.dev/doc/install"
  say "building toxiproxy-server $TOXIPROXY_VERSION with go install"
  mkdir -p .tools/bin
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod "$GO" install \
    "$TOXIPROXY_MODULE/cmd/server@$TOXIPROXY_VERSION" ||
    fail "go install $TOXIPROXY_MODULE/cmd/server@$TOXIPROXY_VERSION failed"
  mv -f .tools/bin/server .tools/bin/toxiproxy-server
  rm -f .tools/toxiproxy-*
  touch "$stamp"
fi

# The project's virtualenv.
if [ ! -e .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found; Python 3.11+ is needed"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    fail "$("$PYTHON" --version) is too old; Python 3.11+ is needed (set PYTHON=...)"
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || fail "python -m venv failed; apt-get install python3-venv"
  fi
  say "installing bullproof and its dev extras into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' ||
    fail "pip install into .venv failed (is PyPI reachable?)"
  touch .venv/.installed
fi
