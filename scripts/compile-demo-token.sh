#!/usr/bin/env bash
# Recompiles devkit/src/devnet/DemoToken.sol with solc-js and rewrites the bytecode in token.rs.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
npm install --prefix "$WORK" --silent --no-audit --no-fund solc@0.8.30 >/dev/null
"$WORK/node_modules/.bin/solcjs" --bin --abi --optimize -o "$WORK/out" "$REPO/devkit/src/devnet/DemoToken.sol"
BIN=$(cat "$WORK"/out/*DemoToken.bin)
python3 - "$REPO/devkit/src/devnet/token.rs" "$BIN" <<'PY'
import re, sys
path, code = sys.argv[1], sys.argv[2]
src = open(path).read()
src = re.sub(r'pub const BYTECODE: &str = "[0-9a-f]*";', f'pub const BYTECODE: &str = "{code}";', src)
open(path, "w").write(src)
PY
rm -rf "$WORK"
echo "updated devkit/src/devnet/token.rs"
