#!/usr/bin/env bash
# Fetch the dashboard's chart library, pinned, into octomil_otel/dashboard/static/vendor/.
# The page loads the UMD build as a plain <script>: no CDN and no build step at run time.
# Run it again only to change the pinned version (then check the page and its test).
set -euo pipefail
VERSION="${CHARTJS_VERSION:-4.6.1}"
cd "$(dirname "$0")/.."
dest=octomil_otel/dashboard/static/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@$VERSION" >/dev/null && tar -xzf "chart.js-$VERSION.tgz")
mkdir -p "$dest"
cp "$work/package/dist/chart.umd.min.js" "$dest/chart.umd.min.js"
cp "$work/package/LICENSE.md" "$dest/chart.js-LICENSE.md"
echo "Chart.js $VERSION -> $dest"
