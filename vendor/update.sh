#!/usr/bin/env bash
# Re-creates vendor/tract-nnef from the crates.io source of tract-nnef and applies our patch.
# Usage: vendor/update.sh [VERSION]   (default: the version in vendor/tract-nnef/Cargo.toml)
# Run `cargo fetch` first so the registry source is on disk; then bump the tract versions in
# Cargo.toml to the same VERSION and rebuild.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/tract-nnef/Cargo.toml" | head -1)}
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"tract-nnef-$version" 2>/dev/null | head -1)
if [ -z "$src" ]; then
  echo "tract-nnef $version is not in the cargo registry cache: run cargo fetch first" >&2
  exit 1
fi
rm -rf "$here/tract-nnef.new"
cp -r "$src" "$here/tract-nnef.new"
rm -f "$here/tract-nnef.new/.cargo-ok" "$here/tract-nnef.new/Cargo.lock"
patch -d "$here/tract-nnef.new" -p1 < "$here/tract-nnef.patch"
rm -rf "$here/tract-nnef"
mv "$here/tract-nnef.new" "$here/tract-nnef"
echo "vendor/tract-nnef is tract-nnef $version + tract-nnef.patch"
