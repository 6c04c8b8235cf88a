#!/usr/bin/env bash
# Static builds (CGO_ENABLED=0) of localproxy and warren for device CPUs, with
# the version stamped where --version / -V print it, and SHA256SUMS.
#
#   bash scripts/release.sh [VERSION] [OUTDIR] [BINARY/CPU ...]   # defaults: git describe, ./dist, all
#
# Naming BINARY/CPU pairs (e.g. localproxy/arm64) builds only those.
# Files: OUTDIR/<binary>-<VERSION>-linux-<cpu> for cpu amd64, arm64, armv7
# (GOARM=7), armv6 (GOARM=6) and mipsle (GOMIPS=softfloat). warren is not
# built for mipsle: its SQLite (modernc.org/sqlite) has no linux/mipsle port.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
out=${2:-dist}
only=("${@:3}")
case $version in
*[!A-Za-z0-9._+-]* | "") echo "release.sh: bad version '$version'" >&2; exit 2 ;;
esac
mkdir -p "$out"
ldflags="-s -w -X main.version=$version -X github.com/warrentunnel/warren/internal/localproxy.Version=$version"

# cpu GOARCH GOARM GOMIPS binaries
targets=(
	"amd64 amd64 - - localproxy warren"
	"arm64 arm64 - - localproxy warren"
	"armv7 arm 7 - localproxy warren"
	"armv6 arm 6 - localproxy warren"
	"mipsle mipsle - softfloat localproxy"
)
built=()
for t in "${targets[@]}"; do
	read -r cpu goarch goarm gomips bins <<<"$t"
	for b in $bins; do
		if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$b/$cpu"; then
			continue
		fi
		f="$b-$version-linux-$cpu"
		echo "build $f"
		vars=(CGO_ENABLED=0 GOOS=linux GOARCH="$goarch")
		[ "$goarm" = - ] || vars+=(GOARM="$goarm")
		[ "$gomips" = - ] || vars+=(GOMIPS="$gomips")
		env "${vars[@]}" go build -trimpath -ldflags "$ldflags" -o "$out/$f" "./cmd/$b"
		built+=("$f")
	done
done
(cd "$out" && sha256sum "${built[@]}" >SHA256SUMS)
echo "release $version: ${#built[@]} binaries and SHA256SUMS in $out"
