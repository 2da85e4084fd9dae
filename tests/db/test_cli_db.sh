#!/bin/sh
# s3o-notify emit, status and purge against a real database (with-db: a
# fresh database holding the migrations, reached through the PG* environment),
# and one delivery through s3o-notifyd to s3o-notify receive.
set -u

bindir="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}"
bin="$bindir/s3o-notify"
: "${PGDATABASE:?PGDATABASE is not set: run through tests/with-db}"
tmp=$(mktemp -d) || exit 1
pids=""
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	psql -qX -d postgres -c "DROP DATABASE IF EXISTS ${PGDATABASE}_empty" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
unset S3O_NOTIFY_CONFIG

watchdog=
if command -v timeout >/dev/null 2>&1; then
	watchdog="timeout 30"
fi

. "$(dirname "$0")/../testlib.sh"

# run NAME WANT_STATUS ARGS...: s3o-notify with stdin from /dev/null; output in
# $tmp/out and $tmp/err.
run() {
	name=$1 want=$2
	shift 2
	$watchdog "$bin" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		fail "$name: exit status" "expected: $want" "got:      $got" \
			"stdout:   $(cat "$tmp/out")" "stderr:   $(cat "$tmp/err")"
		return 1
	fi
	pass "$name"
}

# has NAME FILE TEXT: FILE contains TEXT (fixed string).
has() {
	if grep -qF -- "$3" "$2"; then
		pass "$1"
	else
		fail "$1" "expected to contain: $3" "got: $(cat "$2")"
	fi
}

# hasre NAME FILE REGEX: like has, an extended regular expression (for ages,
# which grow while a loaded machine runs the steps between insert and status)
hasre() {
	if grep -qE -- "$3" "$2"; then
		pass "$1"
	else
		fail "$1" "expected to match: $3" "got: $(cat "$2")"
	fi
}

# sql_is NAME QUERY WANT
sql_is() {
	got=$(psql -qXAt -v ON_ERROR_STOP=1 -c "$2" 2>&1)
	if [ "$got" = "$3" ]; then
		pass "$1"
	else
		fail "$1" "query:    $2" "expected: $3" "got:      $got"
	fi
}

cfg="$tmp/s3o-notify.ini"
cat >"$cfg" <<'EOF'
[database]
url =                 ; the PG* environment

[admin]
listen =

[endpoint "storage"]
url = http://127.0.0.1:9/storage
events = s3:ObjectCreated:*, s3:ObjectRemoved:*

[endpoint "ops"]
url = http://127.0.0.1:9/ops
events = backend.*
EOF

# ---- emit ----
uuid_re='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
if run "emit: a data event" 0 -c "$cfg" emit s3:ObjectCreated:Put --subject photos/a.jpg \
	--data '{"bucket":"photos","key":"photos/a.jpg","size":2048576}'; then
	id=$(cat "$tmp/out")
	if printf '%s\n' "$id" | grep -Eq "$uuid_re"; then
		pass "emit: prints the event_id"
	else
		fail "emit: prints the event_id" "got: $id"
	fi
	sql_is "emit: the row" \
		"SELECT event_type, subject, data->>'size', source IS NULL, fanned_out FROM notification_outbox WHERE event_id = '$id'" \
		"s3:ObjectCreated:Put|photos/a.jpg|2048576|t|f"
fi
S3O_NOTIFY_CONFIG="$cfg"
export S3O_NOTIFY_CONFIG
run "emit: --id, --source, no subject, default data, config from S3O_NOTIFY_CONFIG" 0 \
	emit backend.circuit.opened --id 0B9F3C1E-8A8E-4C3E-9A51-6F1F0F7C2D10 --source /elsewhere
has "emit: prints the given id" "$tmp/out" "0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d10"
sql_is "emit: the row with --id and --source" \
	"SELECT event_type, subject IS NULL, data::text, source FROM notification_outbox WHERE event_id = '0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d10'" \
	"backend.circuit.opened|t|{}|/elsewhere"
printf '{"backend":"b1","utilization_pct":91.5}' | $watchdog "$bin" emit backend.capacity.warning \
	--subject b1 --data - >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ]; then
	pass "emit: --data - reads standard input"
else
	fail "emit: --data - reads standard input" "stderr: $(cat "$tmp/err")"
fi
sql_is "emit: the row from standard input" \
	"SELECT data->>'utilization_pct' FROM notification_outbox WHERE event_id = '$(cat "$tmp/out")'" \
	"91.5"
before=$(psql -qXAt -c "SELECT count(*) FROM notification_outbox")
run "emit: invalid JSON fails" 1 emit s3:ObjectCreated:Put --data '{"bucket":'
has "emit: invalid JSON: the database's error" "$tmp/err" \
	"s3o-notify emit: the database refused the event: invalid input syntax for type json"
has "emit: invalid JSON: the fix" "$tmp/err" "--data must be valid JSON"
run "emit: a type with whitespace fails" 1 emit "s3:Object Created"
has "emit: a type with whitespace: the constraint" "$tmp/err" \
	"event_type_must_be_1_to_255_chars_without_whitespace"
run "emit: an empty type fails" 1 emit ""
sql_is "emit: failures insert nothing" "SELECT count(*) FROM notification_outbox" "$before"

# ---- connection and schema errors ----
cat >"$tmp/nodb.ini" <<'EOF'
[database]
url = host=/nonexistent-s3o-notify-test port=1 dbname=none
[endpoint "storage"]
url = http://127.0.0.1:9/storage
events = s3:*
EOF
run "emit: no database" 1 -c "$tmp/nodb.ini" emit x
has "emit: no database: names the problem and the fix" "$tmp/err" \
	"s3o-notify emit: cannot connect to the database ("
has "emit: no database: the fix" "$tmp/err" "): check [database] url in $tmp/nodb.ini"
run "status: no database" 1 -c "$tmp/nodb.ini" status
run "purge: no database" 1 -c "$tmp/nodb.ini" purge --endpoint x --yes
has "purge: no database: the fix" "$tmp/err" "check [database] url in $tmp/nodb.ini"

psql -qX -d postgres -c "CREATE DATABASE ${PGDATABASE}_empty" >/dev/null
sed "s/^url = .*PG\* environment/url = dbname=${PGDATABASE}_empty/" "$cfg" >"$tmp/empty.ini"
run "status: schema missing fails" 1 -c "$tmp/empty.ini" status
has "status: schema missing: names the fix" "$tmp/err" \
	"the s3o-notify schema is missing in this database (no table notification_schema_version): apply the migrations in sql/"
run "emit: schema missing fails" 1 -c "$tmp/empty.ini" emit x
has "emit: schema missing: names the fix" "$tmp/err" \
	"relation \"notification_outbox\" does not exist: apply the migrations in sql/"

# ---- status ----
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
DELETE FROM notification_outbox;
-- e1: retried for storage (due now), e2: storage waiting for its retry,
-- e3: leased by a daemon for ops, e4 and e5: only for "gone", not configured;
-- e6: new, not fanned out yet.
INSERT INTO notification_outbox (id, event_type, subject, fanned_out, created_at)
OVERRIDING SYSTEM VALUE VALUES
	(1, 's3:ObjectCreated:Put', 'a', true, now() - interval '90 seconds'),
	(2, 's3:ObjectCreated:Put', 'b', true, now() - interval '10 seconds'),
	(3, 'backend.circuit.opened', 'b1', true, now()),
	(4, 's3:ObjectRemoved:Delete', 'c', true, now() - interval '2 hours'),
	(5, 's3:ObjectRemoved:Delete', 'd', true, now()),
	(6, 's3:ObjectCreated:Copy', 'e', false, now() - interval '5 seconds');
INSERT INTO notification_delivery (outbox_id, endpoint, attempts, due_at, lease_until) VALUES
	(1, 'storage', 3, now() - interval '1 second', NULL),
	(2, 'storage', 1, now() + interval '1 minute', NULL),
	(3, 'ops', 2, now(), now() + interval '30 seconds'),
	(1, 'gone', 4, now(), NULL),
	(4, 'gone', 7, now(), NULL),
	(5, 'gone', 0, now(), NULL);
EOF
if run "status: runs" 0 status; then
	cp "$tmp/out" "$tmp/status.out"
	has "status: names the config" "$tmp/status.out" "config:        $cfg (2 endpoints)"
	has "status: schema version" "$tmp/status.out" "schema:        version 1"
	has "status: NOTIFY queue usage" "$tmp/status.out" "NOTIFY queue:  0.00% used"
	hasre "status: new events" "$tmp/status.out" \
		"new events:    1 not yet fanned out \\(0 in flight\\), oldest ([5-9]|[1-5][0-9])\\.[0-9]s"
	has "status: header" "$tmp/status.out" \
		"ENDPOINT   QUEUED      DUE RETRY LATER IN FLIGHT   OLDEST MAX ATTEMPTS"
	hasre "status: storage" "$tmp/status.out" \
		"storage         2        1           1         0    1m[3-5][0-9]s            3"
	has "status: ops (in flight)" "$tmp/status.out" \
		"ops             1        0           0         1"
	has "status: an endpoint not in the config" "$tmp/status.out" \
		"gone            3        3           0         0    2h00m            7  (not in the config)"
	has "status: warns about it, with the fix" "$tmp/status.out" \
		"warning: 3 deliveries are queued for endpoint \"gone\", which is not in $cfg: they stay queued until it is configured again, or remove them with: s3o-notify purge --endpoint gone"
	has "status: counts warnings" "$tmp/status.out" "1 warning:"
fi

psql -qX -c "DELETE FROM notification_schema_version" >/dev/null
run "status: older schema still reports" 0 status
has "status: older schema warns" "$tmp/out" \
	"warning: the schema is at version 0, older than the 1 this s3o-notify needs: apply the newer files of sql/ in order"
psql -qX -c "INSERT INTO notification_schema_version (version) VALUES (1)" >/dev/null

# ---- purge ----
run "purge: refuses without a terminal or --yes" 2 purge --endpoint gone
has "purge: refusal says what to do" "$tmp/err" "add --yes"
sql_is "purge: the refusal deleted nothing" "SELECT count(*) FROM notification_delivery" "6"
if command -v script >/dev/null 2>&1; then
	(sleep 1; echo n) | $watchdog script -qec "$bin purge --endpoint gone" /dev/null \
		>"$tmp/out" 2>&1
	got=$?
	[ "$got" -eq 1 ] && pass "purge: answering n at the prompt exits 1" ||
		fail "purge: answering n at the prompt exits 1" "got: $got" "$(cat "$tmp/out")"
	has "purge: the prompt" "$tmp/out" \
		"Delete 3 queued deliveries for endpoint \"gone\"? They will never be delivered. [y/N]"
	has "purge: n purges nothing" "$tmp/out" "nothing purged"
	sql_is "purge: n deleted nothing" "SELECT count(*) FROM notification_delivery" "6"
	(sleep 1; echo y) | $watchdog script -qec "$bin purge --endpoint storage" /dev/null \
		>"$tmp/out" 2>&1
	got=$?
	[ "$got" -eq 0 ] && pass "purge: answering y at the prompt purges" ||
		fail "purge: answering y at the prompt purges" "got: $got" "$(cat "$tmp/out")"
	has "purge: a configured endpoint gets a note" "$tmp/out" \
		"note: endpoint \"storage\" is in $cfg: s3o-notifyd is still delivering to it"
	has "purge: storage purged" "$tmp/out" \
		"purged 2 deliveries for endpoint \"storage\" and 1 events that had no other delivery queued"
	sql_is "purge: e2 gone, e1 kept for gone" \
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM notification_outbox" "1,3,4,5,6"
else
	skip "purge at a prompt" "script(1) is not installed"
	psql -qX -c "DELETE FROM notification_delivery WHERE endpoint = 'storage';
		DELETE FROM notification_outbox WHERE id = 2" >/dev/null
fi
run "purge --yes" 0 purge --endpoint gone --yes
has "purge --yes: what it did" "$tmp/out" \
	"purged 3 deliveries for endpoint \"gone\" and 3 events that had no other delivery queued"
sql_is "purge: only the ops delivery is left" \
	"SELECT string_agg(outbox_id || ':' || endpoint, ',') FROM notification_delivery" "3:ops"
sql_is "purge: events left: the one for ops and the new one" \
	"SELECT string_agg(id::text, ',' ORDER BY id) FROM notification_outbox" "3,6"
run "purge: nothing queued" 0 purge --endpoint gone --yes
has "purge: nothing queued says so" "$tmp/out" \
	"no deliveries are queued for endpoint \"gone\": nothing to purge"
run "status: after the purge, no warning" 0 status
has "status: 0 warnings" "$tmp/out" "0 warnings"

# ---- through the daemon to s3o-notify receive ----
psql -qX -c "DELETE FROM notification_delivery; DELETE FROM notification_outbox" >/dev/null
: >"$tmp/recv.err"
"$bin" receive --listen 127.0.0.1:0 --secret "hunter2 hunter2" --count 2 --name r \
	>"$tmp/recv.out" 2>"$tmp/recv.err" &
recv_pid=$!
pids="$pids $recv_pid"
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
	port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/recv.err")
	[ -n "$port" ] || sleep 0.05
	i=$((i + 1))
done
cat >"$tmp/daemon.ini" <<EOF
[database]
url =
[admin]
listen =
[log]
format = text
[endpoint "r"]
url = http://127.0.0.1:$port/hooks
events = s3:*
secret = \${TEST_HOOK_SECRET}
EOF
TEST_HOOK_SECRET="hunter2 hunter2" "$bindir/s3o-notifyd" -c "$tmp/daemon.ini" 2>"$tmp/daemon.log" &
daemon_pid=$!
pids="$pids $daemon_pid"
TEST_HOOK_SECRET="hunter2 hunter2" $watchdog "$bin" -c "$tmp/daemon.ini" emit s3:ObjectCreated:Put \
	--subject photos/z.jpg --data '{"bucket":"photos"}' >"$tmp/id1" 2>"$tmp/err" ||
	fail "emit for the daemon" "$(cat "$tmp/err")"
TEST_HOOK_SECRET="hunter2 hunter2" $watchdog "$bin" -c "$tmp/daemon.ini" emit s3:ObjectRemoved:Delete \
	--subject photos/z.jpg >"$tmp/id2" 2>"$tmp/err" || fail "emit for the daemon" "$(cat "$tmp/err")"
i=0
while kill -0 "$recv_pid" 2>/dev/null && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
if kill -0 "$recv_pid" 2>/dev/null; then
	fail "receive: got 2 deliveries from s3o-notifyd within 30 s" "receiver: $(cat "$tmp/recv.out")" \
		"daemon: $(cat "$tmp/daemon.log")"
else
	wait "$recv_pid"
	[ $? -eq 0 ] && pass "receive: exits 0 after --count 2 deliveries" ||
		fail "receive: exits 0 after --count 2 deliveries"
	has "receive: the daemon's first delivery, signature ok" "$tmp/recv.out" \
		"s3:ObjectCreated:Put subject=photos/z.jpg id=$(cat "$tmp/id1") latency="
	has "receive: the daemon's second delivery" "$tmp/recv.out" \
		"s3:ObjectRemoved:Delete subject=photos/z.jpg id=$(cat "$tmp/id2") latency="
	n=$(grep -c ' sig=ok status=200$' "$tmp/recv.out")
	[ "$n" -eq 2 ] && pass "receive: both signatures verified" ||
		fail "receive: both signatures verified" "$(cat "$tmp/recv.out")"
fi
kill -TERM "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null

finish
