#!/usr/bin/env bash
# Prepares a checkout for the GPU machine (no Deno, no registry there): runs the workplace's
# device-prep (compressed Deno in .device/), then puts a slim copy of node_modules into
# .device/node_modules without the plotting packages (fonts, vega, resvg), which GPU runs never load,
# so that what travels stays under the device tool's 64 MiB limit.
# Device command: carry [".device"], start with: source .device/env.sh && ln -sfn .device/node_modules node_modules && ...
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
bash ../shared/tools/device-prep.sh >/dev/null
rm -rf .device/node_modules
cp -a node_modules .device/node_modules
find .device/node_modules/.deno -maxdepth 1 \( -name 'dejavu-fonts-ttf@*' -o -name 'vega*' -o -name '@resvg*' \
  -o -name 'd3-*' -o -name 'topojson*' -o -name 'delaunator*' -o -name 'robust-predicates*' \) -exec rm -rf {} +
echo "ready: $(du -sh .device | cut -f1) in .device"
echo 'device run: carry [".device"], command starting with: source .device/env.sh && rm -rf node_modules && ln -s .device/node_modules node_modules && deno ... --cached-only'
