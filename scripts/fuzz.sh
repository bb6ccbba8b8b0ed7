#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders a stranger's bytes reach (JSON, protobuf, YAML), for a
# bounded time: scripts/fuzz.sh [SECONDS] (default 60). Builds Sources/Fuzz with libFuzzer and
# AddressSanitizer in its own scratch tree (.build-fuzz), starts from Tests/Fuzz/corpus, and keeps
# new interesting inputs in .build-fuzz/corpus (copy the small ones worth keeping into the
# repository's corpus). A crash leaves its input as .build-fuzz/crash-*: replay it with
# `swift build --product cox-fuzz && .build/debug/cox-fuzz FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
swift build --product cox-fuzz --scratch-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld
mkdir -p .build-fuzz/corpus
cd .build-fuzz
./debug/cox-fuzz corpus ../Tests/Fuzz/corpus -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
