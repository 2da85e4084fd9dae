# Shared by the shell tests (sourced): one "ok NAME" or "FAIL NAME" line per
# check, with what was expected and got under a failure; skip for a check
# that cannot run here (a tool is missing); and finish, which prints the
# closing count and returns 1 when anything failed, 77 (which ctest reports
# as skipped) when every check was skipped, 0 otherwise.
failures=0
total=0
skipped=0
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
# skip NAME WHY
skip() {
	skipped=$((skipped + 1))
	printf 'skip %s: %s\n' "$1" "$2"
}
finish() {
	printf '%d passed, %d failed, %d skipped\n' "$((total - failures))" "$failures" "$skipped"
	[ "$failures" -eq 0 ] || return 1
	[ "$total" -eq 0 ] && [ "$skipped" -gt 0 ] && return 77
	return 0
}
