#!/usr/bin/env bash
# Generate the agent's fixture WAVs (16 kHz, mono, 16-bit) with espeak-ng + sox.
# Usage: make_fixtures.sh OUT_DIR   (skips files that already exist)
set -Eeuo pipefail
trap 'echo "make_fixtures.sh: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
out="${1:?usage: make_fixtures.sh OUT_DIR}"
mkdir -p "$out"
make() {
  local name="$1" voice="$2" text="$3"
  [[ -s "$out/$name.wav" ]] && return 0
  local tmp="$out/.$name.raw.wav"
  timeout 60 espeak-ng -v "$voice" -s 165 -w "$tmp" "$text"
  # 0.3 s of leading silence, normalised to -3 dBFS, 16 kHz mono 16-bit
  timeout 60 sox "$tmp" -r 16000 -c 1 -b 16 -e signed-integer "$out/$name.wav" pad 0.3 0 norm -3
  rm -f "$tmp"
}
make greeting en-us "Thank you for calling the callprobe test line. How can I help you?"
make reply en-us "I heard you. Goodbye."
# What a caller says (used by the room-level caller check and for SIP media).
make caller en-gb "Hello, I would like to check the status of my order, please."
# 8 kHz G.711 mu-law copy of the caller line for SIP/RTP senders.
if [[ ! -s "$out/caller.ulaw" ]]; then
  timeout 60 sox "$out/caller.wav" -r 8000 -c 1 -t ul "$out/caller.ulaw"
fi
