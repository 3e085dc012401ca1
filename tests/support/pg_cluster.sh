#!/bin/bash
# Starts and stops a throwaway PostgreSQL cluster for tests.
#
#   pg_cluster.sh start DIR   initdb a new cluster, start it, write DIR/url
#   pg_cluster.sh stop DIR    stop it and delete its data
#
# The server listens on 127.0.0.1 only, on a free port, with its Unix socket inside the
# cluster directory. The role licensing_test (password random, scram-sha-256, TCP from
# 127.0.0.1 only) owns the database licensing_test and may create more databases.
# DIR/url is "postgresql://licensing_test:PASSWORD@127.0.0.1:PORT/licensing_test", mode 0600.
# fsync is off: the data does not survive a machine crash, which tests do not need.
#
# initdb refuses to run as root, so under root the cluster runs as the system user
# licensing-test (created when missing) and its files belong to that user.
# PG_BINDIR overrides the directory of initdb and pg_ctl.
set -euo pipefail

readonly cluster_user=licensing-test
readonly role=licensing_test

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}

find_bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then
    echo "$PG_BINDIR"
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
    echo "pg_cluster.sh: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; set PG_BINDIR" >&2
    exit 1
  fi
  echo "$dir"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$cluster_user" -- "$@"
  else
    "$@"
  fi
}

ensure_cluster_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  if ! id -u "$cluster_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$cluster_user"
  fi
}

free_port() {
  /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# The cluster's files live in DIR/cluster when its owner can reach DIR, and otherwise
# (root running tests in a directory that others cannot enter) in a private directory
# under /tmp. DIR/cluster_dir records which.
make_cluster_dir() {
  local dir=$1 cluster
  if [[ $(id -u) -ne 0 ]] || runuser -u "$cluster_user" -- test -x "$dir" 2>/dev/null; then
    cluster="$dir/cluster"
    mkdir -p "$cluster"
  else
    cluster=$(mktemp -d /tmp/licensing-pg.XXXXXX)
  fi
  chmod 0700 "$cluster"
  if [[ $(id -u) -eq 0 ]]; then
    chown "$cluster_user:" "$cluster"
  fi
  echo "$cluster"
}

stop_cluster() {
  local dir=$1 bindir cluster
  [[ -f "$dir/cluster_dir" ]] || return 0
  cluster=$(cat "$dir/cluster_dir")
  bindir=$(find_bindir)
  if [[ -f "$cluster/data/postmaster.pid" ]]; then
    as_owner "$bindir/pg_ctl" -D "$cluster/data" -m fast -w -t 30 stop >/dev/null
  fi
  # Keep the server log for a failed run; delete the data.
  if [[ -f "$cluster/postgres.log" ]]; then
    cp "$cluster/postgres.log" "$dir/postgres.log" 2>/dev/null || true
  fi
  rm -rf "$cluster"
  rm -f "$dir/cluster_dir" "$dir/url"
}

start_cluster() {
  local dir=$1 bindir cluster password port attempt
  bindir=$(find_bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  stop_cluster "$dir"

  ensure_cluster_user
  cluster=$(make_cluster_dir "$dir")
  echo "$cluster" >"$dir/cluster_dir"
  as_owner mkdir -m 0700 "$cluster/socket"

  as_owner "$bindir/initdb" --pgdata="$cluster/data" --username=postgres --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$cluster/initdb.log" 2>&1 || {
    cat "$cluster/initdb.log" >&2
    exit 1
  }

  # Only the superuser over the owner's private socket, and TCP from 127.0.0.1 with a
  # password.
  as_owner tee "$cluster/data/pg_hba.conf" >/dev/null <<EOF
local all postgres trust
host all all 127.0.0.1/32 scram-sha-256
EOF

  # A port picked free can be taken before the server binds it, so retry with another.
  for attempt in 1 2 3; do
    port=$(free_port)
    as_owner tee "$cluster/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$cluster/socket'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    if as_owner "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/postgres.log" -w -t 30 start >/dev/null; then
      break
    fi
    if [[ $attempt -eq 3 ]]; then
      echo "pg_cluster.sh: PostgreSQL did not start; server log follows" >&2
      cat "$cluster/postgres.log" >&2 || true
      exit 1
    fi
  done

  password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # The password goes through stdin, not the command line, so ps does not show it.
  if ! as_owner "$bindir/psql" --quiet --no-psqlrc -v ON_ERROR_STOP=1 -h "$cluster/socket" -p "$port" \
    -U postgres -d postgres >/dev/null <<EOF; then
CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE $role OWNER $role;
EOF
    echo "pg_cluster.sh: creating the test role failed" >&2
    stop_cluster "$dir"
    exit 1
  fi

  (
    umask 077
    echo "postgresql://$role:$password@127.0.0.1:$port/$role" >"$dir/url"
  )
  echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') listening on 127.0.0.1:$port; URL in $dir/url"
}

[[ $# -eq 2 ]] || usage
case "$1" in
  start) start_cluster "$2" ;;
  stop) stop_cluster "$(cd "$2" 2>/dev/null && pwd || echo "$2")" ;;
  *) usage ;;
esac
