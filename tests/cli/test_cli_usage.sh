#!/bin/sh
# s3o-notify's arguments: --help on every command (exit 0), bad arguments
# (exit 2 with a message naming the problem), the config file's lookup
# (-c FILE, then $S3O_NOTIFY_CONFIG, then /etc/s3o-notify/s3o-notify.ini).
# No database: every case here fails before connecting.
set -u

bin="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}/s3o-notify"
data="${TEST_DATA_DIR:?TEST_DATA_DIR is not set}"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
unset S3O_NOTIFY_CONFIG

watchdog=
if command -v timeout >/dev/null 2>&1; then
	watchdog="timeout 10"
fi

failures=0
total=0

# check NAME WANT_STATUS WANT_ON_OUTPUT -- ARGS... (stdin from /dev/null;
# WANT_ON_OUTPUT is looked for in stdout and stderr together; "" = anything)
check() {
	name=$1 want=$2 text=$3
	shift 4
	total=$((total + 1))
	$watchdog "$bin" "$@" </dev/null >"$tmp/out" 2>&1
	got=$?
	if [ "$got" -ne "$want" ]; then
		printf 'FAIL %s: exit status\n  expected: %s\n  got:      %s\n  output:   %s\n' \
			"$name" "$want" "$got" "$(cat "$tmp/out")"
		failures=$((failures + 1))
		return
	fi
	if [ -n "$text" ] && ! grep -qF -- "$text" "$tmp/out"; then
		printf 'FAIL %s: output\n  expected to contain: %s\n  got:                 %s\n' \
			"$name" "$text" "$(cat "$tmp/out")"
		failures=$((failures + 1))
		return
	fi
	printf 'ok %s\n' "$name"
}

check "--version" 0 "s3o-notify " -- --version
check "--help" 0 "usage: s3o-notify [-c FILE] COMMAND" -- --help
check "no command" 2 "usage: s3o-notify" --
check "unknown command" 2 "s3o-notify: unknown command \"frob\"" -- frob
check "unknown global option" 2 "unknown option --frob" -- --frob status
check "-c without a value" 2 "option -c needs a value" -- -c

for cmd in emit status purge receive verify sign healthcheck; do
	check "$cmd --help" 0 "usage: s3o-notify $cmd" -- "$cmd" --help
	check "$cmd -h" 0 "usage: s3o-notify $cmd" -- "$cmd" -h
	check "$cmd unknown option" 2 "s3o-notify $cmd: unknown option --frob (see: s3o-notify $cmd --help)" \
		-- "$cmd" --frob
done
check "emit --help lists -c" 0 "-c, --config FILE" -- emit --help
check "receive --help has no -c" 0 "" -- receive --help
if grep -q -- "--config" "$tmp/out"; then
	echo "FAIL receive --help mentions --config"
	failures=$((failures + 1))
fi

# emit
check "emit without TYPE" 2 "s3o-notify emit: missing the event TYPE" -- emit
check "emit two TYPEs" 2 "unexpected argument \"b\"" -- emit a b
check "emit --subject without value" 2 "option --subject needs a value" -- emit x --subject
check "emit bad --id" 2 "--id \"nope\" is not a UUID" -- emit x --id nope
check "emit short --id" 2 "is not a UUID" -- emit x --id 0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d1
check "emit missing default config" 2 \
	"s3o-notify emit: /etc/s3o-notify/s3o-notify.ini: cannot open: No such file or directory" \
	-- emit x
check "emit names the fix for a missing config" 2 "pass -c FILE or set S3O_NOTIFY_CONFIG" -- emit x
check "emit -c missing file" 2 "$tmp/none.ini: cannot open" -- -c "$tmp/none.ini" emit x
check "emit -c after the command" 2 "$tmp/none.ini: cannot open" -- emit x -c "$tmp/none.ini"
check "emit invalid config" 2 "unknown_key.ini:3: [dispatcher] unknown key \"batchsize\"" \
	-- emit x -c "$data/config/bad/unknown_key.ini"
S3O_NOTIFY_CONFIG="$tmp/from-env.ini"
export S3O_NOTIFY_CONFIG
check "S3O_NOTIFY_CONFIG" 2 "$tmp/from-env.ini: cannot open" -- status
check "-c wins over S3O_NOTIFY_CONFIG" 2 "$tmp/from-c.ini: cannot open" -- -c "$tmp/from-c.ini" status
unset S3O_NOTIFY_CONFIG

# status, purge
check "status extra argument" 2 "unexpected argument \"now\"" -- status now
check "purge without --endpoint" 2 "s3o-notify purge: --endpoint NAME is required" -- purge --yes
check "purge empty --endpoint" 2 "--endpoint NAME is required" -- purge --endpoint "" --yes
check "purge without a tty or --yes" 2 \
	"refusing to purge without a confirmation: standard input is not a terminal; add --yes" \
	-- purge --endpoint gone

# receive
check "receive without --listen" 2 "--listen ADDR is required" -- receive
check "receive bad address" 2 "--listen \"localhost\": use HOST:PORT" -- receive --listen localhost
check "receive bad port" 2 "use HOST:PORT" -- receive --listen 127.0.0.1:70000
check "receive bare IPv6" 2 "use HOST:PORT" -- receive --listen ::1:8080
check "receive bad --status" 2 "--status \"99\": use an HTTP status, 100 to 599" \
	-- receive --listen 0 --status 99
check "receive non-numeric --status" 2 "use an HTTP status" -- receive --listen 0 --status ok
check "receive bad --count" 2 "--count \"0\": use a number from 1" -- receive --listen 0 --count 0
check "receive empty --secret" 2 "--secret is empty" -- receive --listen 0 --secret ""
check "receive address not on this host" 1 "s3o-notify receive: cannot listen on" \
	-- receive --listen 203.0.113.1:1

# verify, sign, healthcheck
check "verify without --signature" 2 "--secret S and --signature H are required" -- verify --secret s
check "verify without --secret" 2 "--secret S and --signature H are required" \
	-- verify --signature sha256=00
check "verify extra argument" 2 "the body is read from standard input" \
	-- verify --secret s --signature x body.json
check "sign without --secret" 2 "--secret S is required" -- sign
check "healthcheck two URLs" 2 "unexpected argument" -- healthcheck http://a http://b
check "healthcheck refused" 1 "s3o-notify healthcheck: unhealthy: http://127.0.0.1:1/healthz" \
	-- healthcheck http://127.0.0.1:1/healthz

printf '%d passed, %d failed\n' "$((total - failures))" "$failures"
[ "$failures" -eq 0 ]
