#!/usr/bin/env bash
# The kill -9 campaign of issue 16 (item 5): `peerage run` killed with SIGKILL at random
# moments, while peers come and go and it saves its peers file every 100 ms and flushes its
# peerstore every second; after each kill the files load, nothing a completed save or flush
# held is lost, and the node restarts with the same peer ID.
#
#   scripts/kill9-campaign.sh [KILLS] [SEED]     # 100 kills by default, the seed from the clock
#
# The test prints its seed; run again with it to replay a failure. About 2 s per kill.
set -euo pipefail
cd "$(dirname "$0")/.."
export PEERAGE_KILLS="${1:-100}"
if [ -n "${2:-}" ]; then
    export PEERAGE_SEED="$2"
fi
exec cargo test --release --locked -p peerage-node --test integration \
    crash::kill_9_campaign -- --ignored --exact --nocapture
