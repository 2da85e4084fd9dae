#!/bin/sh
# docker/: compose.yaml is valid (docker-compose config -q, no engine needed)
# and refuses to start without HOOK_SECRET; compose.ini passes s3o-notifyd
# --check-config; the Dockerfile's entrypoint and health check name commands
# that exist. The docker-compose checks are skipped when it is not installed.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
bindir="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

. "$(dirname "$0")/../testlib.sh"

unset HOOK_SECRET POSTGRES_PASSWORD S3O_DB_PASSWORD
if command -v docker-compose >/dev/null 2>&1; then
	# A project directory of our own keeps a stray .env out of the check.
	if HOOK_SECRET=test docker-compose --project-directory "$root/docker" \
		-f "$root/docker/compose.yaml" config -q >"$tmp/out" 2>&1; then
		pass "docker-compose config -q"
	else
		fail "docker-compose config -q" "$(cat "$tmp/out")"
	fi
	if docker-compose --project-directory "$root/docker" -f "$root/docker/compose.yaml" \
		config -q >"$tmp/out" 2>&1; then
		fail "compose.yaml without HOOK_SECRET is refused" "$(cat "$tmp/out")"
	elif grep -q "set HOOK_SECRET" "$tmp/out"; then
		pass "compose.yaml without HOOK_SECRET is refused, naming the fix"
	else
		fail "compose.yaml without HOOK_SECRET is refused, naming the fix" "$(cat "$tmp/out")"
	fi
	HOOK_SECRET=test docker-compose --project-directory "$root/docker" \
		-f "$root/docker/compose.yaml" config >"$tmp/config" 2>&1
	for want in "condition: service_healthy" "condition: service_completed_successfully" \
		"image: postgres:15" "/etc/s3o-notify/s3o-notify.ini:ro" "HOOK_SECRET: test"; do
		if grep -qF -- "$want" "$tmp/config"; then
			pass "compose config has: $want"
		else
			fail "compose config has: $want" "$(cat "$tmp/config")"
		fi
	done
else
	skip "docker-compose checks" "docker-compose is not installed (scripts/install-deps installs it)"
fi

if HOOK_SECRET=test "$bindir/s3o-notifyd" --check-config -c "$root/docker/compose.ini" \
	>"$tmp/out" 2>&1; then
	pass "docker/compose.ini passes --check-config"
else
	fail "docker/compose.ini passes --check-config" "$(cat "$tmp/out")"
fi

# The Dockerfile's commands exist in what we build.
df="$root/docker/Dockerfile"
if grep -q '^ENTRYPOINT \["s3o-notifyd", "-c", "/etc/s3o-notify/s3o-notify.ini"\]$' "$df"; then
	pass "Dockerfile entrypoint"
else
	fail "Dockerfile entrypoint" "$(grep ENTRYPOINT "$df")"
fi
if "$bindir/s3o-notify" healthcheck --help >/dev/null 2>&1 &&
	grep -q 'CMD \["s3o-notify", "healthcheck", "http://127.0.0.1:9464/healthz"\]' "$df"; then
	pass "Dockerfile health check uses s3o-notify healthcheck"
else
	fail "Dockerfile health check uses s3o-notify healthcheck"
fi
if grep -q '^USER 10001:10001$' "$df"; then
	pass "Dockerfile runs as a non-root user"
else
	fail "Dockerfile runs as a non-root user"
fi

finish
