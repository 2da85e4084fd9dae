#!/bin/sh
# s3o-notifyd --check-config -c FILE: exit 0 for a valid file; exit 2 with
# "FILE:LINE: message" (or "FILE: message") on stderr for an invalid, missing or
# unreadable one. Fixtures: tests/data/config (see tests/unit/test_config.c).
set -u

bin="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}/s3o-notifyd"
dir="${TEST_DATA_DIR:?TEST_DATA_DIR is not set}/config"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# Variables the fixtures expand.
S3O_TEST_CONFIG_DIR="$dir"
S3O_TEST_SECRET=hunter2
export S3O_TEST_CONFIG_DIR S3O_TEST_SECRET
unset S3O_TEST_UNSET_VARIABLE

# Each run gets a watchdog when timeout(1) is there.
watchdog=
if command -v timeout >/dev/null 2>&1; then
	watchdog="timeout 10"
fi

failures=0
total=0

# check NAME FILE WANT_STATUS [WANT_ON_STDERR]
check() {
	total=$((total + 1))
	$watchdog "$bin" --check-config -c "$2" >"$tmp/stdout" 2>"$tmp/stderr"
	got=$?
	if [ "$got" -ne "$3" ]; then
		printf 'FAIL %s: exit status\n  expected: %s\n  got:      %s\n  stderr:   %s\n' \
			"$1" "$3" "$got" "$(cat "$tmp/stderr")"
		failures=$((failures + 1))
		return
	fi
	if [ $# -ge 4 ] && ! grep -qF -- "$4" "$tmp/stderr"; then
		printf 'FAIL %s: stderr\n  expected to contain: %s\n  got:                 %s\n' \
			"$1" "$4" "$(cat "$tmp/stderr")"
		failures=$((failures + 1))
		return
	fi
	printf 'ok %s\n' "$1"
}

check "full example" "$dir/good/full.ini" 0
check "defaults" "$dir/good/minimal.ini" 0
check "secret_file" "$dir/good/secret_file.ini" 0

f="$dir/bad/bad_duration.ini"
check "bad duration" "$f" 2 \
	"$f:7: [endpoint \"storage\"] timeout: bad duration \"5x\" (use 250ms, 5s, 2m or 1h)"
f="$dir/bad/unknown_key.ini"
check "unknown key" "$f" 2 "$f:3: [dispatcher] unknown key \"batchsize\""
f="$dir/bad/unknown_section.ini"
check "unknown section" "$f" 2 "$f:4: unknown section [databse]"
f="$dir/bad/duplicate_endpoint.ini"
check "duplicate endpoint" "$f" 2 "$f:5: duplicate endpoint \"storage\""
f="$dir/bad/missing_url.ini"
check "missing url" "$f" 2 "$f: [endpoint \"storage\"]: missing required key url"
f="$dir/bad/unset_variable.ini"
check "unset variable" "$f" 2 "$f:4: [endpoint \"storage\"] secret: environment variable S3O_TEST_UNSET_VARIABLE is not set"
f="$dir/bad/garbage_line.ini"
check "garbage line" "$f" 2 "$f:3: expected \"key = value\""
f="$dir/bad/nul_byte.ini"
check "NUL byte" "$f" 2 "$f:6: NUL byte"
f="$dir/bad/long_line.ini"
check "long line" "$f" 2 "$f:2: line too long"

f="$dir/no-such-file.ini"
check "missing file" "$f" 2 "$f: cannot open: No such file or directory"
check "directory" "$dir" 2 "$dir: cannot open: Is a directory"
if [ "$(id -u)" -ne 0 ]; then
	f="$tmp/unreadable.ini"
	cp "$dir/good/minimal.ini" "$f" && chmod 000 "$f"
	check "unreadable file" "$f" 2 "$f: cannot open: Permission denied"
fi

printf '%d of %d checks failed\n' "$failures" "$total"
[ "$failures" -eq 0 ]
