#!/bin/sh
# s3o-notify receive with real POSTs (curl on 127.0.0.1): the line it prints
# per event (type, subject, id, sig=ok/BAD/BAD(missing)/unsigned/unchecked,
# latency, repeat=N), the status it answers (--status, 401 to a bad
# signature, 400 to a body that is not a CloudEvent, 405 to a GET), --count,
# and exit 0 on SIGTERM and SIGINT.
set -u

bin="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}/s3o-notify"
tmp=$(mktemp -d) || exit 1
pids=""
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/../testlib.sh"
if ! command -v curl >/dev/null 2>&1; then
	echo "skipped: curl not found: apt-get install curl (or run scripts/install-deps)"
	exit 77
fi

# start NAME ARGS...: run a receiver on a free port; sets $port and $pid.
start() {
	name=$1
	shift
	: >"$tmp/$name.err"
	"$bin" receive --listen 127.0.0.1:0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pid=$!
	pids="$pids $pid"
	port=
	i=0
	while [ -z "$port" ] && [ $i -lt 100 ]; do
		port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/$name.err")
		[ -n "$port" ] || sleep 0.05
		i=$((i + 1))
	done
	if [ -z "$port" ]; then
		fail "$name starts" "stderr: $(cat "$tmp/$name.err")"
		return 1
	fi
}

# post URL BODY_FILE [HEADER...]: print the HTTP status.
post() {
	url=$1 file=$2
	shift 2
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		-H 'Content-Type: application/cloudevents+json' "$@" --data-binary @"$file" "$url"
}

# expect_eq NAME WANT GOT
expect_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1" "expected: $2" "got:      $3"
	fi
}

# expect_line NAME FILE LINE_NUMBER EXTENDED_REGEX
expect_line() {
	line=$(sed -n "${3}p" "$2")
	if printf '%s\n' "$line" | grep -Eq -- "$4"; then
		pass "$1"
	else
		fail "$1" "expected line $3 to match: $4" "got: $line" "all: $(cat "$2")"
	fi
}

# wait_exit PID SECONDS: the exit status, or 124 when it is still running.
wait_exit() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 20)) ]; do
		sleep 0.05
		i=$((i + 1))
	done
	if kill -0 "$1" 2>/dev/null; then
		return 124
	fi
	wait "$1"
}

now=$(date -u +%Y-%m-%dT%H:%M:%S)
two_s_ago=$(date -u -d '2 seconds ago' +%Y-%m-%dT%H:%M:%S.000000Z)
cat >"$tmp/event.json" <<EOF
{"specversion":"1.0","id":"0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d10","source":"/s3-orchestrator","type":"s3:ObjectCreated:Put","subject":"photos/2026/a.jpg","time":"$two_s_ago","datacontenttype":"application/json","data":{"bucket":"photos","size":2048576}}
EOF
cat >"$tmp/op.json" <<EOF
{"specversion":"1.0","id":"5d1e0c52-5f0e-4e7b-9d44-2a4ad1f4b0b9","source":"/s3-orchestrator","type":"replication.completed","time":"${now}Z","datacontenttype":"application/json","data":{"copies_created":3}}
EOF
printf '{"specversion":"1.0", "type":' >"$tmp/broken.json"
secret='It'"'"'s a Secret to Everybody'
good=$("$bin" sign --secret "$secret" <"$tmp/event.json")
good_op=$("$bin" sign --secret "$secret" <"$tmp/op.json")
good_broken=$("$bin" sign --secret "$secret" <"$tmp/broken.json")
wrong=$("$bin" sign --secret "another secret" <"$tmp/event.json")

# ---- a receiver with a secret, exiting after 6 POSTs ----
if start verified --secret "$secret" --count 6 --name hooks; then
	url="http://127.0.0.1:$port/hooks"
	grep -q "signatures verified, answering 200" "$tmp/verified.err" &&
		pass "verified: says what it does" ||
		fail "verified: says what it does" "stderr: $(cat "$tmp/verified.err")"
	expect_eq "verified: a GET is answered 405" 405 \
		"$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url")"
	expect_eq "verified: good signature answered 200" 200 \
		"$(post "$url" "$tmp/event.json" -H "X-Signature-256: $good")"
	expect_line "verified: good signature line" "$tmp/verified.out" 1 \
		'^\[hooks\] [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} s3:ObjectCreated:Put subject=photos/2026/a\.jpg id=0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d10 latency=[0-9]+ms sig=ok status=200$'
	latency=$(sed -n '1s/.* latency=\([0-9]*\)ms.*/\1/p' "$tmp/verified.out")
	if [ -n "$latency" ] && [ "$latency" -ge 1000 ] && [ "$latency" -lt 60000 ]; then
		pass "verified: latency from the event's time (${latency}ms for an event 2 s old)"
	else
		fail "verified: latency from the event's time" "expected about 2000ms" \
			"got: ${latency}ms"
	fi
	expect_eq "verified: wrong signature answered 401" 401 \
		"$(post "$url" "$tmp/event.json" -H "X-Signature-256: $wrong")"
	expect_line "verified: wrong signature line" "$tmp/verified.out" 2 \
		' s3:ObjectCreated:Put .* repeat=2 sig=BAD status=401$'
	expect_eq "verified: missing signature answered 401" 401 \
		"$(post "$url" "$tmp/op.json")"
	expect_line "verified: missing signature line, no subject" "$tmp/verified.out" 3 \
		' replication\.completed subject=- id=5d1e0c52-5f0e-4e7b-9d44-2a4ad1f4b0b9 latency=[0-9-]+ms sig=BAD\(missing\) status=401$'
	expect_eq "verified: signed operational event answered 200" 200 \
		"$(post "$url" "$tmp/op.json" -H "X-Signature-256: $good_op")"
	expect_line "verified: repeat counts the same id" "$tmp/verified.out" 4 \
		' replication\.completed .* repeat=2 sig=ok status=200$'
	expect_eq "verified: signed invalid JSON answered 400" 400 \
		"$(post "$url" "$tmp/broken.json" -H "X-Signature-256: $good_broken")"
	expect_line "verified: invalid JSON line" "$tmp/verified.out" 5 \
		'\(not a CloudEvent: invalid JSON, 29 bytes\) sig=ok status=400$'
	if wait_exit "$pid" 1; then
		fail "verified: still running after 5 POSTs of --count 6"
	else
		pass "verified: still running after 5 POSTs of --count 6"
	fi
	expect_eq "verified: sixth POST answered" 200 \
		"$(post "$url" "$tmp/event.json" -H "X-Signature-256: $good")"
	wait_exit "$pid" 10
	expect_eq "verified: exits 0 after --count POSTs" 0 "$?"
	expect_eq "verified: one line per POST" 6 "$(wc -l <"$tmp/verified.out" | tr -d ' ')"
fi

# ---- a failing receiver without a secret, stopped by SIGTERM ----
if start failing --status 500; then
	url="http://127.0.0.1:$port/"
	expect_eq "failing: answers --status 500" 500 "$(post "$url" "$tmp/event.json")"
	expect_line "failing: unsigned line without a name" "$tmp/failing.out" 1 \
		'^[0-9:.]+ s3:ObjectCreated:Put subject=photos/2026/a\.jpg .* sig=unsigned status=500$'
	expect_eq "failing: a signature it cannot check does not change the answer" 500 \
		"$(post "$url" "$tmp/event.json" -H "X-Signature-256: $wrong")"
	expect_line "failing: unchecked signature line" "$tmp/failing.out" 2 \
		' sig=unchecked status=500$'
	# The same port cannot be taken twice.
	"$bin" receive --listen "127.0.0.1:$port" >/dev/null 2>"$tmp/busy.err"
	expect_eq "a port in use: exit 1" 1 "$?"
	grep -q "s3o-notify receive: cannot listen on 127.0.0.1 port $port: Address already in use" \
		"$tmp/busy.err" && pass "a port in use: names the problem" ||
		fail "a port in use: names the problem" "stderr: $(cat "$tmp/busy.err")"
	# healthcheck: a GET answered 405 is unhealthy.
	"$bin" healthcheck "http://127.0.0.1:$port/healthz" >/dev/null 2>"$tmp/hc.err"
	expect_eq "healthcheck: a 405 exits 1" 1 "$?"
	grep -qF "unhealthy: http://127.0.0.1:$port/healthz: HTTP 405" "$tmp/hc.err" &&
		pass "healthcheck: names the answer" ||
		fail "healthcheck: names the answer" "stderr: $(cat "$tmp/hc.err")"
	# healthcheck: a password or a token in the URL is not shown.
	"$bin" healthcheck "http://user:hunter2@127.0.0.1:$port/healthz?token=s3cret" \
		>/dev/null 2>"$tmp/hc.err"
	expect_eq "healthcheck: a 405 with credentials in the URL exits 1" 1 "$?"
	if grep -qF "unhealthy: http://***@127.0.0.1:$port/healthz?token=***: HTTP 405" \
		"$tmp/hc.err" && ! grep -qE 'hunter2|s3cret' "$tmp/hc.err"; then
		pass "healthcheck: the URL's password and token are not shown"
	else
		fail "healthcheck: the URL's password and token are not shown" \
			"stderr: $(cat "$tmp/hc.err")"
	fi
	kill -TERM "$pid"
	wait_exit "$pid" 10
	expect_eq "failing: exits 0 on SIGTERM" 0 "$?"
fi

# ---- healthcheck against a server that answers GET with 200 ----
if command -v python3 >/dev/null 2>&1; then
	mkdir "$tmp/www" && echo ok >"$tmp/www/healthz"
	: >"$tmp/www.out"
	python3 -u -m http.server --bind 127.0.0.1 --directory "$tmp/www" 0 \
		>"$tmp/www.out" 2>&1 &
	www=$!
	pids="$pids $www"
	wport=
	i=0
	while [ -z "$wport" ] && [ $i -lt 100 ]; do
		wport=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\).*/\1/p' "$tmp/www.out")
		[ -n "$wport" ] || sleep 0.05
		i=$((i + 1))
	done
	"$bin" healthcheck "http://127.0.0.1:$wport/healthz" >"$tmp/hc.out" 2>&1
	expect_eq "healthcheck: a 200 exits 0" 0 "$?"
	"$bin" healthcheck "http://127.0.0.1:$wport/missing" >"$tmp/hc.out" 2>&1
	expect_eq "healthcheck: a 404 exits 1" 1 "$?"
	kill "$www" 2>/dev/null
else
	skip "healthcheck against a server that answers 200" "python3 is not installed"
fi

# ---- SIGINT ----
if start interrupted --status 204; then
	expect_eq "interrupted: answers --status 204" 204 \
		"$(post "http://127.0.0.1:$port/x" "$tmp/op.json")"
	kill -INT "$pid"
	wait_exit "$pid" 10
	expect_eq "interrupted: exits 0 on SIGINT" 0 "$?"
fi

finish
