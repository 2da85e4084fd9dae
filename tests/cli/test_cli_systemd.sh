#!/bin/sh
# The systemd unit that cmake --install installs (configured into the build
# directory from cmd/s3o-notifyd/s3o-notifyd.service.in): the contract's
# settings, and systemd-analyze verify when systemd is installed.
set -u

bindir="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}"
unit="$bindir/s3o-notifyd.service"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

. "$(dirname "$0")/../testlib.sh"

if [ ! -f "$unit" ]; then
	fail "the unit is configured into the build directory" "missing: $unit"
	finish
	exit 1
fi
for want in '^Type=simple$' '^User=s3o-notify$' '^Restart=on-failure$' '^RestartPreventExitStatus=2$' \
	'^ExecStart=/.*/s3o-notifyd -c /etc/s3o-notify/s3o-notify\.ini$' \
	'^ExecStartPre=/.*/s3o-notifyd --check-config -c /etc/s3o-notify/s3o-notify\.ini$' \
	'^NoNewPrivileges=yes$' '^ProtectSystem=strict$' '^CapabilityBoundingSet=$' \
	'^WantedBy=multi-user\.target$'; do
	if grep -Eq -- "$want" "$unit"; then
		pass "unit has $want"
	else
		fail "unit has $want"
	fi
done
if grep -q '@[A-Z_]*@' "$unit"; then
	fail "no placeholder left" "$(grep '@[A-Z_]*@' "$unit")"
else
	pass "no placeholder left"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
	# verify checks that ExecStart exists: point it at the binary just built.
	sed -e "s|^\(Exec[A-Za-z]*=\)/[^ ]*/s3o-notifyd |\1$bindir/s3o-notifyd |" "$unit" \
		>"$tmp/s3o-notifyd.service"
	# It exits 0 on many problems it only prints: any output is a failure.
	if systemd-analyze verify "$tmp/s3o-notifyd.service" >"$tmp/out" 2>&1 &&
		[ ! -s "$tmp/out" ]; then
		pass "systemd-analyze verify"
	else
		fail "systemd-analyze verify" "$(cat "$tmp/out")"
	fi
else
	skip "systemd-analyze verify" "systemd is not installed"
fi

finish
