#!/bin/sh
# scripts/quickstart end to end, as a new user runs it (as root in CI, which
# it handles with runuser): it must build, start its own PostgreSQL cluster
# (never the one in the PG* environment), show the deliveries, one retry and
# one drop, exit 0 by itself and leave no process or temporary directory.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT INT TERM

. "$(dirname "$0")/../testlib.sh"
# count NAME WANT EXTENDED_REGEX
count() {
	n=$(grep -Ec -- "$3" "$out")
	if [ "$n" -eq "$2" ]; then
		pass "$1"
	else
		fail "$1" "expected $2 lines matching: $3" "got $n"
	fi
}

watchdog=
if command -v timeout >/dev/null 2>&1; then
	watchdog="timeout 280"
fi
QUICKSTART_TIMEOUT=90 $watchdog sh "$root/scripts/quickstart" </dev/null >"$out" 2>&1
status=$?
if [ "$status" -eq 0 ]; then
	pass "quickstart exits 0 by itself"
else
	fail "quickstart exits 0 by itself" "got $status; its output:"
	sed -e 's/^/    | /' "$out"
fi

count "five signed deliveries to healthy, answered 200" 5 \
	'^\[healthy\] [0-9:.]+ [^ ]+ subject=[^ ]+ id=[0-9a-f-]{36} latency=[0-9-]+ms sig=ok status=200$'
for type in s3:ObjectCreated:Put s3:ObjectCreated:CompleteMultipartUpload \
	s3:ObjectRemoved:Delete backend.circuit.opened s3:ObjectCreated:Copy; do
	count "healthy got $type" 1 "^\\[healthy\\] [0-9:.]+ $type "
done
count "replication.completed matched nothing" 0 '^\[[a-z]+\] [0-9:.]+ replication\.completed '
count "the rolled-back event was never delivered" 0 'photos/never\.jpg id='
count "failing: the first attempt, answered 500" 1 \
	'^\[failing\] [0-9:.]+ backend\.circuit\.opened subject=minio-eu-1 id=[0-9a-f-]{36} latency=[0-9-]+ms sig=unsigned status=500$'
count "failing: the retry, same id" 1 \
	'^\[failing\] [0-9:.]+ backend\.circuit\.opened .* repeat=2 sig=unsigned status=500$'
count "the daemon's audit line for the drop" 1 \
	'^\[s3o-notifyd\] .* warn +delivery dropped after 2 attempts audit=true event_id=[0-9a-f-]{36} type=backend\.circuit\.opened endpoint=failing attempts=2 last_error="HTTP 500"$'
count "status at the end: nothing queued, no warning" 1 '^    0 warnings$'
count "metrics: 5 delivered to healthy" 1 '^    s3o_notifications_delivered_total\{endpoint="healthy"\} 5$'
count "metrics: 2 failed attempts at failing" 1 '^    s3o_notifications_failed_total\{endpoint="failing"\} 2$'
count "metrics: 1 dropped at failing" 1 '^    s3o_notifications_dropped_total\{endpoint="failing"\} 1$'
count "metrics: replication.completed unmatched" 1 '^    s3o_notifications_unmatched_total 1$'

tmpdir=$(sed -n 's|^== Writing the configuration \(.*\)/s3o-notify\.ini$|\1|p' "$out")
if [ -z "$tmpdir" ]; then
	fail "quickstart names its temporary directory"
else
	if [ -e "$tmpdir" ]; then
		fail "the temporary directory is removed" "$tmpdir still exists"
	else
		pass "the temporary directory is removed"
	fi
	left=$(ps -eo pid=,args= | grep -F -- "$tmpdir" | grep -v grep)
	if [ -n "$left" ]; then
		fail "no process is left running" "$left"
	else
		pass "no process is left running"
	fi
fi

finish
