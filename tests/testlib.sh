# Shared by the shell tests (sourced): one "ok NAME" or "FAIL NAME" line per
# check, with what was expected and got under a failure, and finish, which
# prints the closing count and returns non-zero when anything failed.
failures=0
total=0
pass() {
	total=$((total + 1))
	printf 'ok %s\n' "$1"
}
fail() {
	total=$((total + 1))
	failures=$((failures + 1))
	printf 'FAIL %s\n' "$1"
	shift
	for line in "$@"; do
		printf '  %s\n' "$line"
	done
}
finish() {
	printf '%d passed, %d failed\n' "$((total - failures))" "$failures"
	[ "$failures" -eq 0 ]
}
