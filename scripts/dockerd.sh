#!/usr/bin/env bash
# A private Docker engine for the sandbox, and the sandbox image built offline.
#
#   scripts/dockerd.sh start    install docker.io + debootstrap if missing, start our own dockerd
#   scripts/dockerd.sh stop     remove the sandbox's containers, stop that dockerd
#   scripts/dockerd.sh status   exit 0 and print DOCKER_HOST if it answers, else exit 1
#   scripts/dockerd.sh image    build (or re-import from cache) the sandbox image amr-sandbox:py3
#   scripts/dockerd.sh reap     remove sandbox containers whose launcher process is gone
#
# Every command is idempotent. The engine is ours alone: its own socket, data root, exec root,
# pidfile and config file, so it never touches a system dockerd or the machine's docker client
# config. No registry is reachable here, so the image is a Debian minbase rootfs with python3
# made by debootstrap from the mirror apt already uses, then `docker import`ed. The rootfs
# tarball is cached under $AMR_CACHE_DIR/docker/ so a fresh data root re-imports in seconds.
#
# Run as root. Prints `export DOCKER_HOST=...` on start so a shell can `eval` it.
set -euo pipefail

ROOT_DIR="${AMR_DOCKER_ROOT:-/var/lib/amr-docker}"
RUN_DIR="${AMR_DOCKER_RUN:-/run/amr-docker}"
SOCKET="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOGFILE="$ROOT_DIR/dockerd.log"
export DOCKER_HOST="unix://$SOCKET"

IMAGE="${AMR_SANDBOX_IMAGE:-amr-sandbox:py3}"
SANDBOX_UID=10001
# Bump when the image recipe below changes: the cached tarball and the image label follow it.
RECIPE_VERSION=1
CACHE_DIR="${AMR_CACHE_DIR:-${HOME:-/root}/.cache/amr-dagster}/docker"
LABEL_FILTER="label=amr-dagster.sandbox=1"
# Every container's cgroup lives under this one (not the default /docker of a system engine).
CGROUP_PARENT="amr-sandbox"

log() { echo "dockerd.sh: $*" >&2; }

docker_cli() {
  # Any docker client will do (Debian's, or a newer one on PATH); the API is negotiated.
  docker -H "$DOCKER_HOST" "$@"
}

engine_answers() {
  [[ -S "$SOCKET" ]] && docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1
}

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  fi
}

reap() {
  # Remove sandbox containers (label amr-dagster.sandbox=1) whose launcher is gone: the owner
  # label is <host>:<pid>; a live launcher on this host keeps its containers. `all` removes every
  # sandbox container (used by stop, when the engine goes away anyway).
  engine_answers || return 0
  local mode="${1:-orphans}" host id owner doomed=()
  host="$(hostname)"
  while read -r id owner; do
    [[ -n "$id" ]] || continue
    if [[ "$mode" != all && "$owner" == "$host:"* ]] && kill -0 "${owner##*:}" 2>/dev/null; then
      continue
    fi
    doomed+=("$id")
  done < <(docker_cli ps -a --filter "$LABEL_FILTER" --format '{{.ID}} {{.Label "amr-dagster.owner"}}')
  if ((${#doomed[@]})); then
    log "removing ${#doomed[@]} sandbox container(s) ($mode)"
    docker_cli rm -f "${doomed[@]}" >/dev/null 2>&1 || true
  fi
}

sandbox_cpu_weight() {
  # All containers sit under one parent cgroup, and by default that whole group weighs as much
  # as ONE host process in the CPU scheduler: on a busy machine every sandbox together would get
  # one process's share (measured here: 31 vs 108 jobs/s under load). Give the group the weight
  # of one process per core, what the local backend's worker processes get.
  local cores
  cores="$(nproc)"
  if [[ -d /sys/fs/cgroup/cpu && ! -f /sys/fs/cgroup/cgroup.controllers ]]; then # cgroup v1
    mkdir -p "/sys/fs/cgroup/cpu/$CGROUP_PARENT" &&
      echo $((1024 * cores)) >"/sys/fs/cgroup/cpu/$CGROUP_PARENT/cpu.shares"
  elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then # cgroup v2
    mkdir -p "/sys/fs/cgroup/$CGROUP_PARENT" &&
      echo $((100 * cores)) >"/sys/fs/cgroup/$CGROUP_PARENT/cpu.weight"
  fi
}

start() {
  ensure_packages
  mkdir -p "$ROOT_DIR" "$RUN_DIR"
  sandbox_cpu_weight 2>/dev/null || log "could not raise the sandbox cgroup's CPU weight (continuing)"
  if engine_answers; then
    log "already running ($DOCKER_HOST)"
  else
    if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      log "dockerd pid $(cat "$PIDFILE") exists but does not answer yet; waiting"
    else
      rm -f "$PIDFILE" "$SOCKET"
      # Our own config file, so a machine-wide /etc/docker/daemon.json cannot change us.
      [[ -f "$ROOT_DIR/daemon.json" ]] || echo '{}' >"$ROOT_DIR/daemon.json"
      # setsid + nohup: the engine outlives this script and the shell that ran it.
      setsid nohup dockerd \
        --iptables=false --ip6tables=false --bridge=none \
        --data-root "$ROOT_DIR/data" \
        --exec-root "$RUN_DIR/exec" \
        --pidfile "$PIDFILE" \
        --config-file "$ROOT_DIR/daemon.json" \
        --cgroup-parent "/$CGROUP_PARENT" \
        -H "$DOCKER_HOST" \
        >>"$LOGFILE" 2>&1 </dev/null &
    fi
    local waited=0
    until engine_answers; do
      if ((waited >= 120)); then
        log "dockerd did not answer on $SOCKET within 60 s; last log lines:"
        tail -n 20 "$LOGFILE" >&2 || true
        exit 1
      fi
      sleep 0.5
      waited=$((waited + 1))
    done
    log "started ($DOCKER_HOST, log $LOGFILE)"
  fi
  reap
  echo "export DOCKER_HOST=$DOCKER_HOST"
}

stop() {
  reap all
  if [[ -f "$PIDFILE" ]]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      if kill -0 "$pid" 2>/dev/null; then
        log "dockerd $pid ignored SIGTERM for 30 s; killing"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$PIDFILE"
  fi
  rm -f "$SOCKET"
  log "stopped"
}

status() {
  if engine_answers; then
    echo "running: DOCKER_HOST=$DOCKER_HOST (server $(docker_cli version --format '{{.Server.Version}}'))"
  else
    echo "not running"
    return 1
  fi
}

apt_mirror() {
  # The Debian mirror this machine's apt already uses (deb822 .sources or a classic list).
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri="$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources | grep -v -- '-security' | head -n1 || true)"
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_rootfs_tarball() {
  # debootstrap minbase + python3, a non-root sandbox user, no apt caches; packed as a tarball.
  local tarball="$1" suite="$2" mirror workdir
  mirror="$(apt_mirror)"
  workdir="$(mktemp -d /var/tmp/amr-rootfs.XXXXXX)"
  # shellcheck disable=SC2064
  trap "rm -rf '$workdir'" RETURN
  log "debootstrap $suite from $mirror (a few minutes, once)"
  debootstrap --variant=minbase --include=python3 "$suite" "$workdir/rootfs" "$mirror" \
    >"$workdir/debootstrap.log" 2>&1 || {
    tail -n 30 "$workdir/debootstrap.log" >&2
    log "debootstrap failed"
    return 1
  }
  local fs="$workdir/rootfs"
  grep -q "^sandbox:" "$fs/etc/passwd" ||
    echo "sandbox:x:$SANDBOX_UID:$SANDBOX_UID:amr sandbox:/tmp:/usr/sbin/nologin" >>"$fs/etc/passwd"
  grep -q "^sandbox:" "$fs/etc/group" || echo "sandbox:x:$SANDBOX_UID:" >>"$fs/etc/group"
  rm -rf "$fs"/var/cache/apt/archives/*.deb "$fs"/var/lib/apt/lists/* "$fs"/tmp/* "$fs"/var/tmp/*
  mkdir -p "$(dirname "$tarball")"
  tar -C "$fs" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  log "cached rootfs $tarball ($(du -h "$tarball" | cut -f1))"
}

image() {
  engine_answers || {
    log "engine not running: run '$0 start' first"
    exit 1
  }
  local recipe
  recipe="$(docker_cli image inspect --format '{{index .Config.Labels "amr-dagster.recipe"}}' "$IMAGE" 2>/dev/null || true)"
  if [[ "$recipe" == "$RECIPE_VERSION" ]]; then
    log "image $IMAGE present"
    return 0
  fi
  local suite
  suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  local tarball="$CACHE_DIR/rootfs-$suite-python3-v$RECIPE_VERSION.tar"
  [[ -f "$tarball" ]] || build_rootfs_tarball "$tarball" "$suite"
  docker_cli import \
    --change "USER $SANDBOX_UID:$SANDBOX_UID" \
    --change "WORKDIR /tmp" \
    --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV PYTHONDONTWRITEBYTECODE=1" \
    --change "LABEL amr-dagster.recipe=$RECIPE_VERSION" \
    --change 'CMD ["python3"]' \
    "$tarball" "$IMAGE" >/dev/null
  log "imported $IMAGE from $tarball"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
image) image ;;
reap) reap ;;
*)
  echo "usage: $0 {start|stop|status|image|reap}" >&2
  exit 2
  ;;
esac
