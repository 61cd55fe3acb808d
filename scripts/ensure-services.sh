#!/usr/bin/env bash
# Make the test services reachable: PostgreSQL and Redis at the configured test URLs, and the
# headless Chromium + chromedriver the dashboard's end-to-end test drives (Debian packages).
# Starts them when installed but stopped; installs them with apt-get when absent and we are
# root. Remote hosts are only checked, never managed.
set -euo pipefail

PG_URL="${SWITCHBOARD_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
REDIS_URL="${SWITCHBOARD_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

say() { echo "ensure-services: $*" >&2; }

# host and port out of scheme://[user[:pass]@]host[:port][/...]
url_host() { local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%/*}"; echo "${rest%%:*}"; }
url_port() {
  local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%/*}"
  if [[ "$rest" == *:* ]]; then echo "${rest##*:}"; else echo "$2"; fi
}

reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() {  # name host port
  for _ in $(seq 1 60); do
    reachable "$2" "$3" && return 0
    sleep 0.5
  done
  say "$1 did not come up on $2:$3 within 30 s"
  return 1
}

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }

apt_install() {
  if [[ "$(id -u)" != "0" ]]; then
    say "$1 is not installed and this is not root: install it (apt-get install $*) or point SWITCHBOARD_TEST_* at a running server"
    exit 1
  fi
  say "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  local host port
  host=$(url_host "$PG_URL"); port=$(url_port "$PG_URL" 5432)
  reachable "$host" "$port" && return 0
  is_local "$host" || { say "Postgres at $host:$port is unreachable (remote: not managed here)"; exit 1; }
  local fresh=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [[ "$fresh" == "1" ]]; then
    # A fresh cluster asks for passwords over TCP; the test URL has none, so trust loopback.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    sed -i "s/^#\?port = .*/port = $port/" "/etc/postgresql/$version/main/postgresql.conf"
  fi
  say "starting PostgreSQL $version on port $port"
  # The package's postinst may have started the cluster before our pg_hba edit: restart.
  [[ "$fresh" == "1" ]] && { pg_ctlcluster --skip-systemctl-redirect "$version" main stop || true; }
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL "$host" "$port"
}

ensure_redis() {
  local host port
  host=$(url_host "$REDIS_URL"); port=$(url_port "$REDIS_URL" 6379)
  reachable "$host" "$port" && return 0
  is_local "$host" || { say "Redis at $host:$port is unreachable (remote: not managed here)"; exit 1; }
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server
    reachable "$host" "$port" && return 0  # the package's postinst may have started it
  fi
  local dir="${TMPDIR:-/tmp}/switchboard-redis"
  mkdir -p "$dir"
  say "starting redis-server on port $port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log"
  wait_for Redis "$host" "$port"
}

ensure_browser() {
  # Debian's packages, never a browser downloaded by Selenium Manager
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
  apt_install chromium chromium-driver
}

ensure_netns_tools() {
  # The scale-out test puts workers in network namespaces (`ip netns`, from iproute2).
  command -v ip >/dev/null && return 0
  apt_install iproute2
}

ensure_pgbouncer() {
  # The pooler tests start their own PgBouncer (transaction mode, Supabase's port-6543 shape);
  # only the binary is needed. The package's own service stays stopped.
  if [[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null; then return 0; fi
  apt_install pgbouncer
}

ensure_postgres
ensure_redis
ensure_browser
ensure_netns_tools
ensure_pgbouncer
say "PostgreSQL, Redis, PgBouncer and headless Chromium are ready"
