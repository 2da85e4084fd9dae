#!/bin/sh
# Signatures: s3o-notify verify and sign against known vectors (GitHub's
# documented example), and the verification snippets of docs/receiving.md
# (openssl, Python, Node, Go: each run when its tool is installed) against
# sign_body's output. The snippets are taken from that page itself: the fenced
# block after a line "<!-- snippet:NAME -->".
set -u

bin="${S3O_BIN_DIR:?S3O_BIN_DIR is not set}/s3o-notify"
doc="$(cd "$(dirname "$0")/../.." && pwd)/docs/receiving.md"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

watchdog=
if command -v timeout >/dev/null 2>&1; then
	watchdog="timeout 20"
fi

. "$(dirname "$0")/../testlib.sh"

# expect NAME WANT_STATUS WANT_STDOUT CMD...: stdin from $tmp/body
expect() {
	name=$1 want=$2 text=$3
	shift 3
	"$@" <"$tmp/body" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		fail "$name: exit status" "expected: $want" "got:      $got" "stderr:   $(cat "$tmp/err")"
	elif [ -n "$text" ] && [ "$(cat "$tmp/out")" != "$text" ]; then
		fail "$name: output" "expected: $text" "got:      $(cat "$tmp/out")"
	else
		pass "$name"
	fi
}

github_secret="It's a Secret to Everybody"
github_sig="sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
printf 'Hello, World!' >"$tmp/body"
expect "sign: GitHub's example" 0 "$github_sig" "$bin" sign --secret "$github_secret"
expect "verify: GitHub's example" 0 "signature ok" \
	"$bin" verify --secret "$github_secret" --signature "$github_sig"
expect "verify: wrong secret" 1 "" "$bin" verify --secret "It's a secret to everybody" \
	--signature "$github_sig"
expect "verify: uppercase hex is not the wire form" 1 "" "$bin" verify \
	--secret "$github_secret" --signature "$(echo "$github_sig" | tr a-f A-F | sed 's/^SHA/sha/')"
expect "verify: without the sha256= prefix" 1 "" "$bin" verify --secret "$github_secret" \
	--signature "${github_sig#sha256=}"
expect "verify: truncated" 1 "" "$bin" verify --secret "$github_secret" \
	--signature "${github_sig%?}"
if grep -q "not of the form sha256=" "$tmp/err"; then
	pass "verify: a malformed value is named"
else
	fail "verify: a malformed value is named" "stderr: $(cat "$tmp/err")"
fi
printf 'Hello, World!\n' >"$tmp/body"
expect "verify: one more byte (a newline)" 1 "" "$bin" verify --secret "$github_secret" \
	--signature "$github_sig"
if grep -q "signature does not match the body (14 bytes)" "$tmp/err"; then
	pass "verify: the failure names the body length"
else
	fail "verify: the failure names the body length" "stderr: $(cat "$tmp/err")"
fi
# RFC 4231 test case 2, and bodies that are bytes, not text.
printf 'what do ya want for nothing?' >"$tmp/body"
expect "sign: RFC 4231 case 2" 0 \
	"sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" \
	"$bin" sign --secret Jefe
: >"$tmp/body"
empty=$("$bin" sign --secret k <"$tmp/body")
expect "verify: an empty body" 0 "signature ok" "$bin" verify --secret k --signature "$empty"
printf 'a\000b' >"$tmp/body"
nul=$("$bin" sign --secret k <"$tmp/body")
expect "verify: a body with a NUL byte" 0 "signature ok" "$bin" verify --secret k --signature "$nul"
printf 'a' >"$tmp/body"
expect "verify: the body cut at the NUL" 1 "" "$bin" verify --secret k --signature "$nul"

# ---- the snippets of docs/receiving.md, against sign_body (s3o-notify sign) ----

# snippet NAME: the fenced block after "<!-- snippet:NAME -->" in docs/receiving.md.
snippet() {
	awk -v marker="<!-- snippet:$1 -->" '
		$0 == marker { found = 1; next }
		found == 1 && /^```/ { found = 2; next }
		found == 2 && /^```/ { exit }
		found == 2 { print }
	' "$doc"
}

# Cases: a CloudEvent with UTF-8, a secret with shell-special characters.
cat >"$tmp/case1.json" <<'EOF'
{"specversion":"1.0","id":"0b9f3c1e-8a8e-4c3e-9a51-6f1f0f7c2d10","source":"/s3-orchestrator","type":"s3:ObjectCreated:Put","subject":"photos/2026/ète à Zürich.jpg","time":"2026-11-26T18:37:51.123456Z","datacontenttype":"application/json","data":{"bucket":"photos","size":2048576}}
EOF
printf 'Hello, World!' >"$tmp/case2.json"
secret1='s3cr3t with spaces, "quotes" & $dollars'
secret2=$github_secret

# check_snippet NAME RUNNER: RUNNER SECRET BODY_FILE HEADER prints valid or INVALID.
check_snippet() {
	name=$1 runner=$2
	for c in 1 2; do
		eval "secret=\$secret$c"
		body="$tmp/case$c.json"
		sig=$("$bin" sign --secret "$secret" <"$body")
		bad=$(printf '%s' "$sig" | sed 's/.$/0/')
		[ "$bad" = "$sig" ] && bad=$(printf '%s' "$sig" | sed 's/.$/1/')
		got=$($watchdog $runner "$secret" "$body" "$sig" 2>"$tmp/err")
		if [ "$got" != "valid" ]; then
			fail "$name snippet accepts sign_body's signature (case $c)" \
				"expected: valid" "got:      $got" "stderr:   $(cat "$tmp/err")"
		else
			pass "$name snippet accepts sign_body's signature (case $c)"
		fi
		got=$($watchdog $runner "$secret" "$body" "$bad" 2>"$tmp/err")
		if [ "$got" != "INVALID" ]; then
			fail "$name snippet rejects a wrong signature (case $c)" \
				"expected: INVALID" "got:      $got" "stderr:   $(cat "$tmp/err")"
		else
			pass "$name snippet rejects a wrong signature (case $c)"
		fi
	done
}

have_snippet() {
	snippet "$1" >"$tmp/snippet.$1"
	if [ ! -s "$tmp/snippet.$1" ]; then
		fail "docs/receiving.md has a block after <!-- snippet:$1 -->"
		return 1
	fi
	return 0
}

# openssl: the snippet reads body.json, $SECRET and $SIGNATURE.
if have_snippet openssl && command -v openssl >/dev/null 2>&1; then
	cat >"$tmp/run_openssl.sh" <<RUN
cd "$tmp" && cp "\$2" body.json && SECRET=\$1 SIGNATURE=\$3 exec sh "$tmp/snippet.openssl"
RUN
	check_snippet openssl "sh $tmp/run_openssl.sh"
else
	skip "openssl snippet" "openssl is not installed"
fi

# Python: the snippet defines verify(secret: bytes, body: bytes, header: str).
if have_snippet python && command -v python3 >/dev/null 2>&1; then
	cat "$tmp/snippet.python" - >"$tmp/verify.py" <<'EOF'

import sys
print("valid" if verify(sys.argv[1].encode(), open(sys.argv[2], "rb").read(), sys.argv[3])
      else "INVALID")
EOF
	check_snippet python "python3 $tmp/verify.py"
else
	skip "python snippet" "python3 is not installed"
fi

# Node: the snippet defines verify(secret, body, header).
if have_snippet node && command -v node >/dev/null 2>&1; then
	cat "$tmp/snippet.node" - >"$tmp/verify.js" <<'EOF'

const fs = require("fs");
const [secret, file, header] = process.argv.slice(2);
console.log(verify(secret, fs.readFileSync(file), header) ? "valid" : "INVALID");
EOF
	check_snippet node "node $tmp/verify.js"
else
	skip "node snippet" "node is not installed"
fi

# Go: the snippet is a func verify(secret, body []byte, header string) bool.
if have_snippet go && command -v go >/dev/null 2>&1; then
	mkdir -p "$tmp/go"
	{
		printf 'package main\n\nimport (\n\t"crypto/hmac"\n\t"crypto/sha256"\n'
		printf '\t"encoding/hex"\n\t"fmt"\n\t"os"\n)\n\n'
		cat "$tmp/snippet.go"
		printf '\nfunc main() {\n\tbody, _ := os.ReadFile(os.Args[2])\n'
		printf '\tif verify([]byte(os.Args[1]), body, os.Args[3]) {\n\t\tfmt.Println("valid")\n'
		printf '\t} else {\n\t\tfmt.Println("INVALID")\n\t}\n}\n'
	} >"$tmp/go/main.go"
	if (cd "$tmp/go" && HOME="$tmp" GOCACHE="$tmp/gocache" GOFLAGS=-mod=mod \
		go build -o verify main.go) >"$tmp/err" 2>&1; then
		check_snippet go "$tmp/go/verify"
	else
		fail "go snippet compiles" "$(cat "$tmp/err")"
	fi
else
	skip "go snippet" "go is not installed"
fi

finish
