# Shared helpers for platform-up.sh / platform-down.sh. Sourced, never run.
# Every step prints "==> what" then "    ok (what it found or changed)"; a failure prints what
# failed, where its log is and what to do, then exits non-zero.

KDR_STATE_DIR="${KDR_STATE_DIR:-/var/lib/kryonix-dr}"
KDR_LOG_DIR="${KDR_LOG_DIR:-/var/log/kryonix-dr}"
KDR_PLATFORM_FILE="${KDR_PLATFORM_FILE:-$KDR_STATE_DIR/platform.json}"
# Markers that say a piece was started by us, so teardown touches only what is ours.
KDR_OWNED_DIR="$KDR_STATE_DIR/owned"
KDR_SECRETS_DIR="$KDR_STATE_DIR/secrets"
# Lock outside the state dir: platform-down removes the state dir while holding it.
KDR_LOCK_FILE="${KDR_LOCK_FILE:-/run/lock/kryonix-dr.platform.lock}"

step() { printf '==> %s\n' "$*"; }
ok() { printf '    ok (%s)\n' "$*"; }
warn() { printf '    warning: %s\n' "$*" >&2; }

# die WHAT LOG FIX: stops the script with the three facts a person needs.
die() {
  local what="$1" log="${2:-}" fix="${3:-}"
  printf '    FAILED: %s\n' "$what" >&2
  if [[ -n "$log" ]]; then
    printf '    log:    %s\n' "$log" >&2
    if [[ -f "$log" ]]; then
      printf '    last lines of the log:\n' >&2
      tail -n 15 "$log" | sed 's/^/      | /' >&2
    fi
  fi
  [[ -n "$fix" ]] && printf '    to do:  %s\n' "$fix" >&2
  exit 1
}

need_root() {
  [[ "$(id -u)" == 0 ]] || die "this script must run as root (it installs packages and starts daemons)" "" "run it with sudo or as root"
}

# Serialises platform-up/platform-down runs (tests and helpers may start them concurrently).
take_lock() {
  mkdir -p "$(dirname "$KDR_LOCK_FILE")"
  # Every daemon started below is spawned with 9>&- so it does not hold this lock for life.
  exec 9>"$KDR_LOCK_FILE"
  if ! flock -w 900 9; then
    die "another platform-up/platform-down held $KDR_LOCK_FILE for 15 minutes" "" "check 'ps aux | grep platform-' and wait for it or stop it"
  fi
}

ensure_dirs() {
  mkdir -p "$KDR_STATE_DIR" "$KDR_LOG_DIR" "$KDR_OWNED_DIR" "$KDR_SECRETS_DIR"
  # The state dir holds data dirs of daemons that run as other users (postgres); the secrets
  # below it stay private.
  chmod 0755 "$KDR_STATE_DIR"
  chmod 0700 "$KDR_SECRETS_DIR"
}

# wait_until SECONDS CMD...: polls CMD every 0.5 s until it succeeds or the time is up.
wait_until() {
  local limit="$1"; shift
  local deadline=$((SECONDS + limit))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  "$@" >/dev/null 2>&1
}

# secret NAME [BYTES]: prints a random credential generated once and kept (mode 0600) in the state dir.
secret() {
  local name="$1" bytes="${2:-24}" file="$KDR_SECRETS_DIR/$1"
  if [[ ! -s "$file" ]]; then
    (umask 077; head -c "$bytes" /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c $((bytes * 4 / 3)) >"$file.tmp" && mv "$file.tmp" "$file")
  fi
  chmod 0600 "$file"
  cat "$file"
}

# secret_upper NAME LEN: an S3-style access key (upper-case letters and digits).
access_key() {
  local name="$1" file="$KDR_SECRETS_DIR/$1"
  if [[ ! -s "$file" ]]; then
    (umask 077; head -c 64 /dev/urandom | base64 | tr -dc 'A-Z0-9' | head -c 20 >"$file.tmp" && mv "$file.tmp" "$file")
  fi
  chmod 0600 "$file"
  cat "$file"
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile FILE NAME [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period.
stop_pidfile() {
  local file="$1" name="$2" grace="${3:-20}" pid
  [[ -s "$file" ]] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.3; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name (pid $pid) had not exited ${grace}s after SIGTERM; sent SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$file"
}
