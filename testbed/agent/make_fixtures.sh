#!/usr/bin/env bash
# Generate the agent's and the caller's fixture WAVs with festival's HTS voice
# cmu_us_slt_arctic_hts (Debian: festival festvox-us-slt-hts) + sox:
# 16 kHz mono 16-bit, 0.3 s of leading silence, normalised to -3 dBFS, no
# dither (reruns give identical files). The clips and their texts are the
# table of phrases.py (greeting, replies, "You pressed …", caller phrases).
# Also caller.ulaw: 8 kHz G.711 mu-law of caller.wav for SIP/RTP senders.
# Usage: make_fixtures.sh OUT_DIR
# Nothing is redone while OUT_DIR/.stamp matches this script + phrases.py;
# otherwise every clip is regenerated (one festival run, ~10 s).
set -Eeuo pipefail
trap 'echo "make_fixtures.sh: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
out="${1:?usage: make_fixtures.sh OUT_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
voice_dir=/usr/share/festival/voices/us/cmu_us_slt_arctic_hts
mkdir -p "$out"

stamp="$(cat "$here/make_fixtures.sh" "$here/phrases.py" | sha256sum | cut -d' ' -f1)"
if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" && -s "$out/caller.ulaw" ]]; then
  exit 0
fi
if ! command -v text2wave >/dev/null || [[ ! -d "$voice_dir" ]]; then
  echo "make_fixtures.sh: needs festival and its voice festvox-us-slt-hts ($voice_dir):" >&2
  echo "  apt-get install festival festvox-us-slt-hts   (scripts/install-deps does it)" >&2
  exit 1
fi
command -v sox >/dev/null || { echo "make_fixtures.sh: needs sox" >&2; exit 1; }

rm -f "$out"/*.wav "$out"/*.ulaw "$out"/.*.raw.wav "$out/.stamp"
scm="$out/.fixtures.scm"
python3 "$here/phrases.py" festival-script "$out" >"$scm"
timeout 300 festival -b "$scm"
rm -f "$scm"
while IFS=$'\t' read -r name _text; do
  raw="$out/.$name.raw.wav"
  [[ -s "$raw" ]] || { echo "make_fixtures.sh: festival made no $raw" >&2; exit 1; }
  timeout 60 sox -D "$raw" -r 16000 -c 1 -b 16 -e signed-integer "$out/$name.wav" pad 0.3 0 norm -3
  rm -f "$raw"
done < <(python3 "$here/phrases.py" clips)
timeout 60 sox -D "$out/caller.wav" -r 8000 -c 1 -t ul "$out/caller.ulaw"
echo "$stamp" >"$out/.stamp"
