#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder an untrusted party reaches
# (host/fuzz: proposals, batch, http, socket, store, json), with libFuzzer on the
# stable toolchain: the targets are built with LLVM's sanitizer-coverage
# passes (the flags cargo-fuzz passes, without a nightly-only sanitizer)
# into target/fuzz, so the main build is never invalidated.
#
#   tools/fuzz.sh                      short run: every target 12 s (CI)
#   tools/fuzz.sh --seconds N          every target N seconds
#   tools/fuzz.sh TARGET --minutes M   long run of one target
#   tools/fuzz.sh TARGET --seconds N
#
# Each target starts from its committed seeds (host/fuzz/corpus/TARGET) and
# the corpus earlier runs grew (target/fuzz/corpus/TARGET, kept between
# runs). An input that crashes, hangs or runs out of memory is written to
# target/fuzz/artifacts/TARGET/ and the script exits 1: copy it to
# host/fuzz/regressions/TARGET/ with the fix, so the regression test
# (host/fuzz/tests/corpus.rs, run by `cargo test --release`) keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(proposals batch http socket store json)
only=""
seconds=12
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *)
            if [[ " ${targets[*]} " == *" $1 "* ]]; then only="$1"; shift
            else echo "tools/fuzz.sh: unknown target or option '$1' (targets: ${targets[*]})" >&2; exit 2; fi ;;
    esac
done
[ -n "$only" ] && targets=("$only")

host=$(rustc -vV | sed -n 's/^host: //p')
out=target/fuzz
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "building ${targets[*]} with coverage instrumentation into $out ..."
# --target: the flags apply to the targets' code only, not to build
# scripts and proc macros (which would not link with them).
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
    cargo build --release --quiet --manifest-path host/fuzz/Cargo.toml \
    --target-dir "$out" --target "$host" --features engine "${bins[@]}"

failed=0
summary=()
for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="$out/$t.log"
    start=$(date +%s)
    # -timeout: an input that takes longer is a hang (the HTTP and socket
    # clients give up after 2 s). -rss_limit_mb: an input that makes the
    # process hold more is a finding; so is one allocation past 1 GiB (the
    # targets' allocator aborts on it: host/fuzz/src/alloc_limit.rs).
    set +e
    "$out/$host/release/$t" "$corpus" "host/fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    set -e
    wall=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    found=$(find "$artifacts" -type f | wc -l)
    summary+=("$(printf '%-10s %6ss %12s %8s %8s %8s %8s' "$t" "$wall" "${execs:-?}" "$files" "${cov:-?}" "${ft:-?}" "$found")")
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
        failed=1
        echo "FINDING in $t (exit $rc): see $log and $artifacts/" >&2
        grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 >&2 || true
    fi
done
printf '%-10s %7s %12s %8s %8s %8s %8s\n' target wall executions corpus edges features findings
printf '%s\n' "${summary[@]}"
exit "$failed"
