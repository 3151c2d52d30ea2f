#!/usr/bin/env bash
# Writes crates/core/tests/data/twilio-smart-encoding.tsv from Twilio's own segment calculator
# (npm package sms-segments-calculator, the code behind twiliodeved.github.io's calculator),
# whose SmartEncodingMap is the table Twilio's Messaging Services apply. One line per
# character: its code point (hex), the replacement as a JSON string, and its Unicode name.
# sms-core's table (crates/core/src/smart.rs) must equal it: crates/core/tests/smart_table.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-1.3.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "sms-segments-calculator@$version" >/dev/null && tar xzf ./*.tgz)
node -e '
const m = require(process.argv[1]).default;
const rows = Object.keys(m).map(k => [k.codePointAt(0), m[k]]).sort((a, b) => a[0] - b[0]);
for (const [cp, to] of rows) console.log(cp.toString(16).toUpperCase().padStart(4, "0") + "\t" + JSON.stringify(to));
' "$work/package/dist/libs/SmartEncodingMap.js" |
python3 -c '
import sys, unicodedata
print("# Twilio smart encoding, from sms-segments-calculator@'"$version"' (dist/libs/SmartEncodingMap.js)")
print("# code point\treplacement (JSON)\tname")
for line in sys.stdin:
    cp, to = line.rstrip("\n").split("\t")
    name = unicodedata.name(chr(int(cp, 16)), "<control>")
    print(f"{cp}\t{to}\t{name}")
' > crates/core/tests/data/twilio-smart-encoding.tsv
wc -l crates/core/tests/data/twilio-smart-encoding.tsv
