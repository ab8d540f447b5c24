#!/usr/bin/env bash
# The docker-compose cluster end to end: builds laminar:dev (scripts/build-image), starts the
# repository's docker-compose.yml under a project name of its own, waits until node1 sees three
# brokers through node2, produces 100 messages through node1, consumes them through node3 and
# checks that all 100 came back in order. `docker-compose down -v` always runs at the end.
#
#   tests/cluster/compose/test_compose.sh [SOURCE_DIR]
#
# Prints "SKIPPED: <reason>" and exits 0 when Docker cannot be used here: docker or
# docker-compose not installed, no daemon and none could be started, debootstrap missing (and no
# laminar-base:bookworm image yet), or LAMINAR_SKIP_DOCKER=1. A dockerd this test started is
# stopped at exit. scripts/install-deps installs docker.io, docker-compose and debootstrap when
# LAMINAR_DOCKER_DEPS=1.
set -uo pipefail

src=${1:-$(cd "$(dirname "$0")/../../.." && pwd)}
cd "$src" || exit 1

skip() { echo "SKIPPED: $*"; exit 0; }
log() { echo "compose: $*"; }
fail() { echo "compose: FAILED: $*"; exit 1; }

[ "${LAMINAR_SKIP_DOCKER:-0}" = 1 ] && skip "LAMINAR_SKIP_DOCKER=1"
command -v docker >/dev/null || skip "docker is not installed (LAMINAR_DOCKER_DEPS=1 scripts/install-deps)"
if command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  skip "docker-compose is not installed (LAMINAR_DOCKER_DEPS=1 scripts/install-deps)"
fi

dockerd_pid=""
project=""
cleanup() {
  local rc=$?
  if [ -n "$project" ]; then
    if [ "$rc" -ne 0 ]; then
      log "last log lines of each node:"
      compose logs --no-color --tail=15 2>&1 | sed 's/^/  /'
    fi
    log "docker-compose down -v"
    compose down -v --remove-orphans >/dev/null 2>&1 || log "down failed"
  fi
  if [ -n "$dockerd_pid" ]; then
    log "stopping the dockerd this test started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || skip "docker daemon not running and dockerd not installed"
  [ "$(id -u)" -eq 0 ] || skip "docker daemon not running and not root to start it"
  log "starting dockerd (log in /tmp/dockerd.log)"
  setsid dockerd >/tmp/dockerd.log 2>&1 </dev/null &
  dockerd_pid=$!
  for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.3
  done
  if ! docker info >/dev/null 2>&1; then
    tail -n 5 /tmp/dockerd.log | sed 's/^/  /'
    skip "dockerd could not be started (see /tmp/dockerd.log)"
  fi
fi
if ! command -v debootstrap >/dev/null && ! docker image inspect laminar-base:bookworm >/dev/null 2>&1; then
  skip "debootstrap is not installed (LAMINAR_DOCKER_DEPS=1 scripts/install-deps)"
fi

started=$SECONDS
log "scripts/build-image"
scripts/build-image || fail "scripts/build-image"
log "image built in $((SECONDS - started)) s"

# A project name of its own, so runs side by side or a developer's `docker-compose up` are not
# touched; host ports are left to Docker to choose (empty LAMINAR_NODEn_*PORT), so none collide.
project="laminartest$$x$(date +%s)"
compose() { "${compose_cmd[@]}" -p "$project" -f "$src/docker-compose.yml" "$@"; }
for n in 1 2 3; do export "LAMINAR_NODE${n}_PORT=" "LAMINAR_NODE${n}_METRICS_PORT="; done

log "docker-compose -p $project up -d"
compose up -d >/dev/null 2>&1 || { compose up -d; fail "docker-compose up"; }
compose ps

# kcat inside node1's container, so the brokers' advertised nodeN:9092 names resolve.
kc() { # node timeout kcat-args...
  local node=$1 t=$2; shift 2
  timeout "$t" "${compose_cmd[@]}" -p "$project" -f "$src/docker-compose.yml" exec -T "$node" kcat "$@"
}

log "waiting up to 60 s for node1 to see 3 brokers through node2"
deadline=$((SECONDS + 60)) seen=""
while :; do
  meta=$(kc node1 10 -b node2:9092 -L -m 5 2>&1)
  seen=$(printf '%s\n' "$meta" | sed -n 's/^ *\([0-9][0-9]*\) brokers:.*/\1/p' | head -n 1)
  [ "$seen" = 3 ] && break
  if [ $SECONDS -ge $deadline ]; then
    printf '%s\n' "$meta" | head -n 8 | sed 's/^/  /'
    fail "after 60 s the metadata from node2 lists ${seen:-no} broker(s), not 3"
  fi
  sleep 2
done
log "metadata lists 3 brokers after $((60 - (deadline - SECONDS))) s"
printf '%s\n' "$meta" | sed -n '1,5p' | sed 's/^/  /'

topic="compose-$$"
expected=$(seq -f 'message-%03g' 1 100)
log "producing 100 messages to $topic through node1"
printf '%s\n' "$expected" | kc node1 60 -b node1:9092 -t "$topic" -P -p 0 -X acks=all \
  || fail "kcat produce through node1"

log "consuming them through node3"
got=$(kc node3 60 -b node3:9092 -t "$topic" -C -p 0 -o beginning -c 100 -e -q -f '%s\n')
if [ "$got" != "$expected" ]; then
  diff <(printf '%s\n' "$expected") <(printf '%s\n' "$got") | head -n 20 | sed 's/^/  /'
  fail "node3 returned $(printf '%s' "$got" | grep -c .) message(s), not the 100 produced in order"
fi
log "all 100 messages came back in order through node3"
log "PASSED in $((SECONDS - started)) s"
