#!/usr/bin/env bash
# Rebuild the vendored three.js bundle of the HTML report (needs Node.js and npm; not needed to use bodycapture).
# Pinned: three 0.187.0 (r187, MIT) and esbuild 0.28.2 (package.json, package-lock.json).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
cp node_modules/three/LICENSE ../../src/bodycapture/data/viewer/three.LICENSE
ls -l ../../src/bodycapture/data/viewer/
