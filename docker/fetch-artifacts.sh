#!/bin/sh
# Check, fetch and verify the external artifacts of a module image, listed in a lock file
# (docker/artifacts-jetson.lock), before anything compiles.
#
#   fetch-artifacts.sh check LOCK            every artifact reachable? (seconds; all failures listed)
#   fetch-artifacts.sh fetch LOCK DEST NAME  one `file` artifact into DEST/NAME, sha256 verified
#   fetch-artifacts.sh clone LOCK NAME DEST  one `git` artifact (recursive), its commit verified
#
# Lock lines: `<kind> <name> <sha256 or commit, or -> <upstream URL> [git ref]`; kinds: file, git,
# sub (a submodule the recursive clone of git artifact <parent> fetches, named <parent>/<path>, at the
# commit the parent pins: checked for reachability, verified after the clone), url (only checked: apt
# repositories, the package index).
# Environment:
#   ARTIFACTS_DIR   a folder of files the user supplies (named as in the lock); used first
#   ARTIFACTS_URL   an internal mirror holding the same file names; used instead of upstream
#   ARTIFACTS_TIMEOUT  seconds per check (default 20)
# Supplied files (ARTIFACTS_DIR, ARTIFACTS_URL) must have a pinned sha256 in the lock; an unpinned
# upstream file is used but its sha256 is printed so it can be pinned.
set -eu

TIMEOUT=${ARTIFACTS_TIMEOUT:-20}
ARTIFACTS_DIR=${ARTIFACTS_DIR:-}
ARTIFACTS_URL=${ARTIFACTS_URL:-}

fail() {
  echo "fetch-artifacts: $*" >&2
  exit 3
}

entry() {  # entry LOCK NAME -> "kind name pin url ref"
  line=$(grep -v '^#' "$1" | awk -v n="$2" '$2 == n { print; exit }')
  [ -n "$line" ] || fail "$2 is not in $1; add a line for it (kind name sha256 url), or use the version the lock has"
  echo "$line"
}

source_of() {  # source_of NAME UPSTREAM_URL -> where the file comes from
  if [ -n "$ARTIFACTS_DIR" ] && [ -f "$ARTIFACTS_DIR/$1" ]; then
    echo "$ARTIFACTS_DIR/$1"
  elif [ -n "$ARTIFACTS_URL" ]; then
    echo "${ARTIFACTS_URL%/}/$1"
  else
    echo "$2"
  fi
}

reachable() {  # reachable URL_OR_PATH -> exit status, error text on stdout
  case "$1" in
    /*) [ -f "$1" ] || echo "no such file" ;;
    file://*) [ -f "${1#file://}" ] || echo "no such file" ;;
    *) curl -fsSL -o /dev/null -r 0-0 --max-time "$TIMEOUT" "$1" 2>&1 || true ;;
  esac
}

check() {
  lock=$1
  failures=0
  # shellcheck disable=SC2034
  while read -r kind name pin url ref; do
    case "$kind" in ''|'#'*) continue ;; esac
    case "$kind" in
      file) where=$(source_of "$name" "$url"); problem=$(reachable "$where") ;;
      url) where=$url; problem=$(reachable "$url") ;;
      git)
        where="$url ($ref)"
        problem=$(timeout "$TIMEOUT" git ls-remote --exit-code "$url" "$ref" >/dev/null 2>&1 || echo "no ref $ref")
        ;;
      sub)
        where="$url (submodule ${name#*/} of ${name%%/*})"
        problem=$(timeout "$TIMEOUT" git ls-remote --exit-code "$url" HEAD >/dev/null 2>&1 || echo "not reachable")
        ;;
      *) where=$url; problem="unknown kind $kind" ;;
    esac
    if [ -n "$problem" ]; then
      echo "MISSING $name: $where: $problem" >&2
      failures=$((failures + 1))
    else
      echo "ok $name: $where"
    fi
  done < "$lock"
  if [ "$failures" -gt 0 ]; then
    cat >&2 <<EOF
fetch-artifacts: $failures artifact(s) of $lock cannot be reached; nothing was built.
  A file: download it where it still exists (or take it from an older build's deps/ folder), put it in a
  folder and build with \`invoke build --artifacts DIR\` (docker buildx --build-context artifacts=DIR), or
  serve such a folder and pass --build-arg ARTIFACTS_URL=https://mirror/path; its sha256 must match the lock.
  A git repository or an apt/package index: check the network or proxy; RedisAI and RedisGears are
  archived on GitHub (end of life), the L4T repository belongs to NVIDIA.
EOF
    exit 3
  fi
}

fetch() {
  lock=$1 dest=$2 name=$3
  line=$(entry "$lock" "$name") || exit 3
  # shellcheck disable=SC2086  # the lock's fields, split on purpose
  set -- $line
  [ "$1" = file ] || fail "$name is a $1 artifact, not a file"
  pin=$3 url=$4
  from=$(source_of "$name" "$url")
  mkdir -p "$dest"
  case "$from" in
    /*) cp "$from" "$dest/$name" ;;
    *) curl -fsSL --retry 3 --connect-timeout "$TIMEOUT" -o "$dest/$name" "$from" || fail "cannot download $from" ;;
  esac
  got=$(sha256sum "$dest/$name" | cut -d' ' -f1)
  if [ "$pin" = "-" ]; then
    [ "$from" = "$url" ] || fail "$name from $from has no pinned sha256; put $got into $lock if you trust it"
    echo "fetch-artifacts: UNPINNED $name from $url has sha256 $got; pin it in $lock" >&2
  elif [ "$got" != "$pin" ]; then
    rm -f "$dest/$name"
    fail "$name from $from has sha256 $got, the lock pins $pin; get the original file (or fix the lock)"
  fi
  echo "fetched $name ($got) from $from"
}

clone() {
  lock=$1 name=$2 dest=$3
  line=$(entry "$lock" "$name") || exit 3
  # shellcheck disable=SC2086  # the lock's fields, split on purpose
  set -- $line
  [ "$1" = git ] || fail "$name is a $1 artifact, not a git repository"
  pin=$3 url=$4 ref=${5:?}
  git clone --quiet --recursive --depth 1 --branch "$ref" "$url" "$dest" || fail "cannot clone $url at $ref"
  got=$(git -C "$dest" rev-parse HEAD)
  [ "$pin" = "-" ] || [ "$got" = "$pin" ] || fail "$url $ref is commit $got, the lock pins $pin; the tag moved"
  # Its submodules: each one the lock names must be checked out at the lock's commit.
  grep -v '^#' "$lock" | awk -v p="$name/" '$1 == "sub" && index($2, p) == 1 { print $2, $3 }' |
    while read -r sub commit; do
      path=${sub#"$name"/}
      at=$(git -C "$dest/$path" rev-parse HEAD 2>/dev/null) || fail "$name has no submodule $path; fix the lock"
      [ "$at" = "$commit" ] || fail "submodule $path of $name is at $at, the lock pins $commit; fix the lock"
    done
  echo "cloned $name $ref ($got)"
}

case "${1:-}" in
  check) check "${2:?lock file}" ;;
  fetch) fetch "${2:?lock file}" "${3:?destination}" "${4:?name}" ;;
  clone) clone "${2:?lock file}" "${3:?name}" "${4:?destination}" ;;
  *) echo "usage: $0 check LOCK | fetch LOCK DEST NAME | clone LOCK NAME DEST" >&2; exit 2 ;;
esac
