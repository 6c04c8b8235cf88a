#!/usr/bin/env bash
# The test command of the README: formatting, vet, every test with the race
# detector, and a short run of each fuzz target on its committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...

# The data path's microbenchmarks, briefly: each reports its allocations per
# frame (0 for the codec, the relay's forwarding and the local proxy's
# connection path).
go test -run '^$' -bench 'FrameAround|Unmarshal|ReadFrame/|PushTake|Forward|ConnPath' -benchtime 2000x \
	./internal/wire ./internal/framepool ./internal/fairq ./internal/relay ./internal/localproxy

# The bench, short: its figures are printed for the log, not asserted (its
# own test asserts that every row is there).
go run ./cmd/warren bench --quick

# Fuzz each target briefly (the seed corpus already ran above as plain tests).
fuzztime=${FUZZTIME:-10s}
for target in $(grep -rl --include='*_test.go' '^func Fuzz' internal | xargs grep -ho '^func Fuzz[A-Za-z0-9_]*' | sort -u | sed 's/^func //'); do
	pkg=$(dirname "$(grep -rl --include='*_test.go' "^func $target(" internal | head -1)")
	echo "fuzz $target in ./$pkg for $fuzztime"
	go test -run='^$' -fuzz="^$target\$" -fuzztime="$fuzztime" "./$pkg"
done
echo "all tests passed"
