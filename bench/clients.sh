#!/usr/bin/env bash
# bench/clients.sh [N] [ROUNDS]: the built-in HTTP/1.1 client against libcurl
# for plain http, on the same machine in the same run. Builds Release into
# build-bench-clients/, starts a throwaway PostgreSQL (initdb on a private
# unix socket, as bench/run does) and drains a backlog of N events (default
# 50000) into bench-receiver ROUNDS times (default 3) per client, the two
# alternated: http://127.0.0.1:PORT/hook goes through the built-in client,
# http://localhost:PORT/hook through libcurl (a host name; localhost is
# resolved by libcurl itself, no DNS). For each drain it prints the rate the
# receiver measured (first to last arrival) and the daemon's CPU per event
# (utime + stime from /proc/PID/stat over the whole run, start-up included),
# then the medians and their ratio. Results: bench/README.md.
# Environment: BENCH_BUILD_DIR (default build-bench-clients), PGBIN,
# BENCH_KEEP=1 (keep the temp dir and its logs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench="$root/bench"
build="${BENCH_BUILD_DIR:-$root/build-bench-clients}"
N=${1:-50000}
ROUNDS=${2:-3}
SECRET="bench-secret-0123456789abcdef"

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	say "error: $*"
	exit 2
}

if [ -z "${PGBIN:-}" ]; then
	PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1 || true)
fi
for t in initdb pg_ctl postgres psql pgbench; do
	[ -x "$PGBIN/$t" ] || die "$PGBIN/$t not found (apt-get install postgresql; or set PGBIN)"
done
if [ "$(id -u)" -eq 0 ]; then
	as_pg() { runuser -u postgres -- "$@"; }
else
	as_pg() { "$@"; }
fi

PIDS=()
tmp=""
pg_up=0
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
	[ "$pg_up" = 0 ] || as_pg "$PGBIN/pg_ctl" -D "$tmp/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
	if [ -n "$tmp" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM
tmp=$(mktemp -d /tmp/s3o-clients.XXXXXX)
chmod 755 "$tmp"

say "build: Release into $build"
if ! grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build/CMakeCache.txt" 2>/dev/null; then
	cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$tmp/build.log" 2>&1 ||
		die "cmake failed: $(tail -n 5 "$tmp/build.log")"
fi
cmake --build "$build" -j"$(nproc)" --target s3o-notifyd bench-receiver >>"$tmp/build.log" 2>&1 ||
	die "build failed: $(tail -n 5 "$tmp/build.log")"
DAEMON="$build/s3o-notifyd"
RECEIVER="$build/bench/bench-receiver"

mkdir "$tmp/sock" "$tmp/data"
[ "$(id -u)" -ne 0 ] || chown postgres: "$tmp/sock" "$tmp/data"
as_pg "$PGBIN/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 ||
	die "initdb failed: $(tail -n 5 "$tmp/initdb.log")"
printf "listen_addresses = ''\nunix_socket_directories = '%s'\nshared_buffers = 256MB\nmax_wal_size = 4GB\n" \
	"$tmp/sock" | as_pg tee -a "$tmp/data/postgresql.conf" >/dev/null
touch "$tmp/pg.log"
[ "$(id -u)" -ne 0 ] || chown postgres: "$tmp/pg.log"
as_pg "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w -t 60 start >/dev/null ||
	die "postgres did not start: $(tail -n 5 "$tmp/pg.log")"
pg_up=1
export PGHOST="$tmp/sock" PGPORT=5432 PGUSER=postgres PGDATABASE=bench
unset PGPASSWORD PGSERVICE PGOPTIONS PGHOSTADDR || true
"$PGBIN/psql" -qX -d postgres -c "CREATE DATABASE bench" >/dev/null
for f in "$root"/sql/[0-9][0-9][0-9]_*.sql; do
	"$PGBIN/psql" -qX -v ON_ERROR_STOP=1 -f "$f" >/dev/null || die "migration $f failed"
done
q() { timeout 600 "$PGBIN/psql" -qXAt -v ON_ERROR_STOP=1 -c "$1"; }
queued() { q "SELECT (SELECT count(*) FROM notification_outbox) + (SELECT count(*) FROM notification_delivery)"; }
jget() { sed -n "s/.*\"$2\":\\(-\\{0,1\\}[0-9.]*\\).*/\\1/p" "$1" | head -n 1; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The daemon's utime + stime so far, in clock ticks.
cpu_ticks() {
	local stat f
	stat=$(cat "/proc/$1/stat") || return 1
	read -ra f <<<"${stat##*) }" # f[0] is field 3: utime is field 14, stime 15
	echo $((f[11] + f[12]))
}
HZ=$(getconf CLK_TCK)

# drain NAME HOST WHO: one backlog of N events through http://HOST:PORT/hook;
# sets RATE (events/s) and CPU (daemon us per event).
drain() {
	local name=$1 host=$2 who=$3 port pid i deadline ticks
	q "TRUNCATE notification_outbox, notification_delivery RESTART IDENTITY" >/dev/null
	timeout 600 "$PGBIN/pgbench" -n -t 1 -f "$bench/bulk.sql" -D n="$N" -D types=1 >"$tmp/$name.load" 2>&1 ||
		die "$name: backlog load failed"
	q "VACUUM ANALYZE notification_outbox" >/dev/null
	q "CHECKPOINT" >/dev/null
	[ "$(queued)" = "$N" ] || die "$name: $(queued) rows loaded, expected $N"
	# A port another process takes between the check and the bind: the
	# receiver exits, and another port is tried.
	local try up=0
	for ((try = 0; try < 20 && !up; try++)); do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" || continue
		"$RECEIVER" -p "$port" -n "$N" -m $((N * 2)) >"$tmp/$name.recv" 2>"$tmp/$name.recv.err" &
		pid=$!
		PIDS+=("$pid")
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			if ! port_free "$port"; then
				up=1
				break
			fi
			sleep 0.05
		done
		[ "$up" = 1 ] || stop_pid "$pid"
	done
	[ "$up" = 1 ] || die "$name: the receiver did not start: $(cat "$tmp/$name.recv.err")"
	printf '[database]\nurl = host=%s port=%s user=%s dbname=%s\n\n[admin]\nlisten =\n\n[log]\nlevel = info\nformat = text\n\n[endpoint "bench"]\nurl = http://%s:%s/hook\nevents = s3:ObjectCreated:*\nsecret = %s\n' \
		"$PGHOST" "$PGPORT" "$PGUSER" "$PGDATABASE" "$host" "$port" "$SECRET" >"$tmp/$name.ini"
	"$DAEMON" -c "$tmp/$name.ini" 2>"$tmp/$name.log" &
	local dpid=$!
	PIDS+=("$dpid")
	deadline=$((SECONDS + 60 + N / 300))
	until grep -q '"count"' "$tmp/$name.recv" 2>/dev/null; do
		kill -0 "$dpid" 2>/dev/null || die "$name: the daemon died: $(tail -n 3 "$tmp/$name.log")"
		[ "$SECONDS" -lt "$deadline" ] || die "$name: not all $N events arrived (queued: $(queued))"
		sleep 0.05
	done
	ticks=$(cpu_ticks "$dpid")
	stop_pid "$dpid"
	stop_pid "$pid"
	[ "$(jget "$tmp/$name.recv" dups)" = 0 ] || say "$name: $(jget "$tmp/$name.recv" dups) duplicates"
	grep -q "POSTs through $who" "$tmp/$name.log" || die "$name: not sent through $who: $(grep 'POSTs through' "$tmp/$name.log")"
	! grep -Eq '^[^ ]+ (warn|error) ' "$tmp/$name.log" ||
		say "$name: the daemon logged: $(grep -Em1 '^[^ ]+ (warn|error) ' "$tmp/$name.log")"
	RATE=$(jget "$tmp/$name.recv" rate)
	CPU=$((ticks * 1000000 / HZ / N))
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

say "clients: $ROUNDS rounds of a $N-event backlog per client, alternated; daemon from $(git -C "$root" rev-parse --short HEAD)"
printf 'round client   url                          rate_ev_s  daemon_cpu_us_per_event\n'
R_B=() R_C=() C_B=() C_C=()
for ((r = 1; r <= ROUNDS; r++)); do
	for c in builtin libcurl; do
		if [ "$c" = builtin ]; then host=127.0.0.1 who="the built-in"; else host=localhost who=libcurl; fi
		drain "${c}_$r" "$host" "$who"
		printf '%5d %-8s http://%-9s:PORT/hook %10s %24s\n' "$r" "$c" "$host" "$RATE" "$CPU"
		if [ "$c" = builtin ]; then R_B+=("$RATE") C_B+=("$CPU"); else R_C+=("$RATE") C_C+=("$CPU"); fi
	done
done
rb=$(printf '%s\n' "${R_B[@]}" | median)
rc=$(printf '%s\n' "${R_C[@]}" | median)
cb=$(printf '%s\n' "${C_B[@]}" | median)
cc=$(printf '%s\n' "${C_C[@]}" | median)
printf 'median: built-in %s ev/s, %s us/event; libcurl %s ev/s, %s us/event\n' "$rb" "$cb" "$rc" "$cc"
awk -v rb="$rb" -v rc="$rc" -v cb="$cb" -v cc="$cc" \
	'BEGIN { printf "ratio built-in / libcurl: drain rate %.2f, daemon CPU per event %.2f\n", rb / rc, cb / cc }'
printf 'machine: %s CPUs, load average %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
