#!/bin/sh
# Build one libFuzzer target with clang (the main build uses gcc) and fuzz it.
#   tests/fuzz/run.sh TARGET SECONDS [WORKDIR]
# TARGET is fuzz_config, fuzz_pattern, fuzz_retry_after, fuzz_envelope or
# fuzz_http_response. The committed corpus (tests/fuzz/corpus/TARGET) is copied
# to WORKDIR first, so what libFuzzer adds never dirties the repository; every
# committed input is run before fuzzing starts. SECONDS 0 runs the corpus once
# and stops. Exits non-zero on a crash, a leak, a failed check, a timeout or an
# out-of-memory; the input is saved under WORKDIR/TARGET/artifacts and the
# command to replay it is printed. Exits 77 (ctest: skipped) when clang or its
# libFuzzer runtime is not installed.
set -eu
if [ $# -lt 2 ]; then
	echo "usage: $0 TARGET SECONDS [WORKDIR]" >&2
	exit 2
fi
target=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work="${3:-$root/build-fuzz}/$target"
CLANG="${CLANG:-clang}"

case "$target" in
fuzz_config) srcs="lib/config.c lib/log.c lib/clock.c" pkgs="inih libpq" ;;
fuzz_pattern) srcs="lib/pattern.c" pkgs="" ;;
fuzz_retry_after) srcs="lib/backoff.c" pkgs="" ;;
fuzz_envelope) srcs="lib/event.c" pkgs="libcjson" ;;
fuzz_http_response) srcs="lib/http_response.c" pkgs="" ;;
*)
	echo "$0: unknown target $target" >&2
	exit 2
	;;
esac

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "skipped: $CLANG not found: apt-get install clang (or run scripts/install-deps)"
	exit 77
fi
mkdir -p "$work"
# The libFuzzer and sanitizer runtimes are a separate Debian package that
# clang only recommends.
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n); int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$work/probe.c"
if ! "$CLANG" -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>"$work/probe.log"; then
	cat "$work/probe.log" >&2
	echo "skipped: $CLANG cannot link -fsanitize=fuzzer: apt-get install libclang-rt-$("$CLANG" -dumpversion | cut -d. -f1)-dev"
	exit 77
fi

set -- -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Werror -D_GNU_SOURCE '-DS3O_VERSION="fuzz"' "-DTEST_DATA_DIR=\"$root/tests/data\"" \
	-I"$root/lib" -I"$here" -o "$work/$target" "$here/$target.c"
for s in $srcs; do
	set -- "$@" "$root/$s"
done
deps=""
# shellcheck disable=SC2086 # pkg-config takes the module list as words
[ -n "$pkgs" ] && deps=$(pkg-config --cflags --libs $pkgs)
echo "== $target: building"
# shellcheck disable=SC2086 # the flags pkg-config printed, one word each
"$CLANG" "$@" $deps

rm -rf "$work/corpus" "$work/artifacts"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$here/corpus/$target/"* "$work/corpus/"
dict=""
[ -f "$here/$target.dict" ] && dict="-dict=$here/$target.dict"

export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
opts="-timeout=5 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$work/artifacts/"
echo "== $target: $seconds s over a copy of tests/fuzz/corpus/$target ($(find "$work/corpus" -type f | wc -l) inputs)"
rc=0
if [ "$seconds" -eq 0 ]; then
	# shellcheck disable=SC2086
	"$work/$target" $opts "$work/corpus/"* </dev/null || rc=$?
else
	# shellcheck disable=SC2086
	"$work/$target" $opts $dict -max_total_time="$seconds" "$work/corpus" </dev/null || rc=$?
fi
if [ "$rc" -ne 0 ]; then
	echo "$target: FAILED (exit $rc)" >&2
	saved=""
	for f in "$work/artifacts/"*; do
		[ -e "$f" ] || continue
		saved=1
		echo "  input saved: $f" >&2
		echo "  replay: $work/$target $f" >&2
	done
	[ -n "$saved" ] || echo "  replay: $work/$target $work/corpus/*" >&2
	exit 1
fi
echo "$target: ok"
