#!/usr/bin/env bash
# After a release: keeps a copy of the chart as released, under
# src/internal/chart/testdata/released/<chart version>/, for the upgrade
# test (src/internal/chart/upgrade_test.go). That test renders every
# released copy and the current chart with the same values, and fails if
# the DaemonSet's selector, name or environment moves, or if a values file
# the released chart accepted is refused; it also fails if the chart
# changes while its version stays that of a released copy.
#
#   scripts/release-chart-snapshot.sh    # run on the released commit, commit the result
set -euo pipefail
cd "$(dirname "$0")/.."

src=charts/vault-kms-plugin
version=$(sed -n 's/^version:[[:space:]]*//p' "$src/Chart.yaml" | tr -d "\"'[:space:]")
dest=src/internal/chart/testdata/released/$version
if [[ -e $dest ]]; then
  diff -r "$src" "$dest/vault-kms-plugin" >/dev/null ||
    { echo "$dest exists and differs from $src: chart $version was released with other content; bump the chart's version" >&2; exit 1; }
  echo "$dest is already the released chart $version"
  exit 0
fi
mkdir -p "$dest"
cp -R "$src" "$dest/"
echo "kept chart $version in $dest: commit it"
