#!/usr/bin/env bash
# A local PostgreSQL server for the registry tests, on a Unix socket in /run/postgresql.
# Prints nothing on success. The tests find it on that socket (tests/pg.py), or wherever
# MDTOOL_TEST_PG points (an admin URL, e.g. postgresql:///postgres); without one they skip.
set -euo pipefail
ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$ver" ] || { echo "postgres: not installed" >&2; exit 1; }
case "${1:-start}" in
  start)
    if ! pg_lsclusters -h 2>/dev/null | grep -q "^$ver main"; then
      pg_createcluster "$ver" main >/dev/null
    fi
    if ! pg_lsclusters -h | grep -q "^$ver main .* online"; then
      pg_ctlcluster "$ver" main start
    fi
    for _ in $(seq 50); do
      su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
      sleep 0.2
    done
    su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='root'\"" | grep -q 1 \
      || su postgres -c "createuser -s root"
    ;;
  stop)
    pg_ctlcluster "$ver" main stop || true
    ;;
esac
