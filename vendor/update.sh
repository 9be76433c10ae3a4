#!/usr/bin/env bash
# Re-creates vendor/CRATE from the crates.io source of that crate and applies vendor/CRATE.patch.
# Usage: vendor/update.sh CRATE [VERSION]   e.g. vendor/update.sh tract-linalg 0.23.10
# (default VERSION: the one vendored now). Run `cargo fetch` first so the registry source is on
# disk; bump the tract versions in Cargo.toml to the same VERSION, then rebuild and test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
crate=${1:?usage: vendor/update.sh CRATE [VERSION]}
version=${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/$crate/Cargo.toml" | head -1)}
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version" 2>/dev/null | head -1)
if [ -z "$src" ]; then
  echo "$crate $version is not in the cargo registry cache: run cargo fetch first" >&2
  exit 1
fi
rm -rf "$here/$crate.new"
cp -r "$src" "$here/$crate.new"
# Cargo's unpack marker, a lock file cargo ignores for dependencies, and stray core dumps
# (tract-linalg 0.23.9 ships two, 4 MB).
rm -f "$here/$crate.new/.cargo-ok" "$here/$crate.new/Cargo.lock" "$here/$crate.new"/core.*
patch -d "$here/$crate.new" -p1 < "$here/$crate.patch"
rm -rf "${here:?}/$crate"
mv "$here/$crate.new" "$here/$crate"
echo "vendor/$crate is $crate $version + $crate.patch"
