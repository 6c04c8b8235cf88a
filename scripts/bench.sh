#!/usr/bin/env bash
# Benchmarks of the data path against direct loopback TCP, measured in the
# same run; prints the median of each metric over COUNT runs (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
out=$(mktemp)
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1x}" -count "$count" ./bench/ | tee "$out"
echo
echo "medians over $count runs:"
awk '/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) { key = name " " $(i+1); vals[key] = vals[key] " " $i }
}
END {
	for (k in vals) {
		n = split(substr(vals[k], 2), a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		printf "%-28s %-22s %12.3f\n", substr(k, 1, index(k, " ") - 1), substr(k, index(k, " ") + 1), med
	}
}' "$out" | sort
rm -f "$out"
