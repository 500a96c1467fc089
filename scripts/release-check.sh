#!/usr/bin/env bash
# Checks that a release tag agrees with the repository, before anything is
# built or pushed. The release workflow (.github/workflows/release.yaml) runs
# it first; run it by hand before pushing a tag.
#
#   scripts/release-check.sh v0.1.0         plugin release: image + chart
#   scripts/release-check.sh chart-v0.2.0   chart-only release
#
# A plugin tag vX.Y.Z needs X.Y.Z == VERSION. Either tag needs:
#   - Chart.yaml appVersion == VERSION (the chart installs this release),
#   - a SemVer chart version (a chart tag names it: chart-vX.Y.Z),
#   - a CHANGELOG.md section for the release: "## [X.Y.Z] - <date>" for a
#     plugin tag, "## [chart-X.Y.Z] - <date>" for a chart tag.
# Whether that chart version is already published is checked by the
# workflow (it needs the registry).
#
# Prints, for $GITHUB_OUTPUT: kind=app|chart, version=<VERSION>,
# chart_version=<Chart.yaml version>, tag=<tag>.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:?usage: scripts/release-check.sh <tag: vX.Y.Z or chart-vX.Y.Z>}
semver='^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
chart=charts/vault-kms-plugin/Chart.yaml
fail() { echo "release-check: $*" >&2; exit 1; }

version=$(tr -d '[:space:]' <VERSION)
[[ $version =~ $semver ]] || fail "VERSION '$version' is not SemVer"
chart_version=$(sed -n 's/^version:[[:space:]]*//p' "$chart" | tr -d "\"'[:space:]")
app_version=$(sed -n 's/^appVersion:[[:space:]]*//p' "$chart" | tr -d "\"'[:space:]")
[[ $chart_version =~ $semver ]] || fail "$chart version '$chart_version' is not SemVer"
[[ $app_version == "$version" ]] || fail "$chart appVersion '$app_version' is not VERSION '$version': the chart must install this release"

case $tag in
  v*)
    kind=app
    [[ ${tag#v} == "$version" ]] || fail "tag $tag is not v\$(cat VERSION) = v$version"
    heading="## [$version] - "
    ;;
  chart-v*)
    kind=chart
    [[ ${tag#chart-v} == "$chart_version" ]] || fail "tag $tag is not chart-v<Chart.yaml version> = chart-v$chart_version"
    heading="## [chart-$chart_version] - "
    ;;
  *)
    fail "tag $tag is neither vX.Y.Z (plugin) nor chart-vX.Y.Z (chart)"
    ;;
esac
grep -qF -- "$heading" CHANGELOG.md || fail "CHANGELOG.md has no section '$heading<date>': move the Unreleased entries under it"

echo "kind=$kind"
echo "version=$version"
echo "chart_version=$chart_version"
echo "tag=$tag"
