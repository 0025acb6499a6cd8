#!/usr/bin/env bash
# Installs tools/kusto-check's npm dependencies (Kusto.Language for JavaScript) from
# package-lock.json. Idempotent: does nothing when node_modules matches the lock file.
# Needs node >= 20 and npm on PATH, and access to the npm registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

command -v node >/dev/null || { echo "kusto-check/setup.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "kusto-check/setup.sh: npm is not installed" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "kusto-check/setup.sh: node >= 20 needed, found $(node --version)" >&2
  exit 1
fi

# npm writes node_modules/.package-lock.json on every install; it is stale when package-lock.json
# is newer, or when the package's own files are gone.
stamp=node_modules/.package-lock.json
pkg=node_modules/@kusto/language-service-next
if [ -f "$stamp" ] && [ ! "package-lock.json" -nt "$stamp" ] \
   && [ -f "$pkg/Kusto.Language.Bridge.min.js" ] && [ -f "$pkg/bridge.min.js" ] \
   && [ "$(node -p "require('./$pkg/package.json').version")" = \
        "$(node -p "require('./package-lock.json').packages['node_modules/@kusto/language-service-next'].version")" ]; then
  exit 0
fi

npm ci --no-audit --no-fund --loglevel=error >/dev/null
