#!/usr/bin/env python3
"""RTP peer for the SIPp calls of the smoke test (stdlib only).

Binds 127.0.0.1:PORT (the port SIPp's SDP offers), counts the RTP that
arrives, and decodes G.711 (PCMU/PCMA) to tell speech from silence. Once the
far end's address is known (symmetric RTP), it sends 20 ms PCMU packets back:
silence, and, after the far end's first utterance (the agent's greeting)
ends, the caller utterance from --say (8 kHz mu-law raw), once.

  rtp_peer.py --port P --out summary.json [--say caller.ulaw] [--max-seconds 120]

Writes the JSON summary on SIGTERM/SIGINT or after --max-seconds, and also
every second (so a reader never waits for exit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import time


def _ulaw_table() -> list[int]:
    out = []
    for i in range(256):
        u = ~i & 0xFF
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        sample = ((mantissa << 3) + 0x84) << exponent
        sample -= 0x84
        out.append(-sample if sign else sample)
    return out


def _alaw_table() -> list[int]:
    out = []
    for i in range(256):
        a = i ^ 0x55
        sign = a & 0x80
        exponent = (a >> 4) & 0x07
        mantissa = a & 0x0F
        if exponent == 0:
            sample = (mantissa << 4) + 8
        else:
            sample = ((mantissa << 4) + 0x108) << (exponent - 1)
        out.append(sample if sign else -sample)
    return out


ULAW = _ulaw_table()
ALAW = _alaw_table()


def level_db(payload: bytes, pt: int) -> float | None:
    table = ULAW if pt == 0 else ALAW if pt == 8 else None
    if table is None or not payload:
        return None
    acc = 0.0
    for b in payload:
        s = table[b]
        acc += s * s
    rms = math.sqrt(acc / len(payload)) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else -120.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--say", help="8 kHz mu-law raw file to speak after the first far-end utterance")
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--threshold-db", type=float, default=-40)
    args = ap.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    say = open(args.say, "rb").read() if args.say else b""

    t0 = time.monotonic()
    st = {
        "port": args.port,
        "packets": 0,
        "bytes": 0,
        "payload_types": {},
        "sources": [],
        "first_packet_after_s": None,
        "voiced_packets": 0,
        "utterances": [],  # [start_s, end_s] of far-end speech, relative to the first packet
        "sent_packets": 0,
        "said_at_s": None,
        "rtcp_or_other": 0,
    }
    remote = None
    voiced_run = 0.0
    silent_run = 0.0
    in_speech = False
    first_t = None
    say_pos = -1  # -1: not yet, >=0: speaking, None: done
    ssrc = random.getrandbits(32)
    seq = random.getrandbits(16)
    ts = random.getrandbits(32)
    next_send = time.monotonic()
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def dump():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=2, sort_keys=True)
        os.replace(tmp, args.out)

    last_dump = 0.0
    while not stop and time.monotonic() - t0 < args.max_seconds:
        now = time.monotonic()
        timeout = max(0.0, min(0.02, next_send - now)) if remote else 0.1
        r, _, _ = select.select([sock], [], [], timeout)
        if r:
            data, addr = sock.recvfrom(4096)
            if len(data) < 12 or (data[0] >> 6) != 2 or 72 <= (data[1] & 0x7F) <= 95:
                st["rtcp_or_other"] += 1
                continue
            pt = data[1] & 0x7F
            cc = data[0] & 0x0F
            off = 12 + 4 * cc
            if data[0] & 0x10 and len(data) >= off + 4:  # header extension
                off += 4 + 4 * struct.unpack("!H", data[off + 2 : off + 4])[0]
            payload = data[off:]
            if data[0] & 0x20 and payload:  # padding
                payload = payload[: -payload[-1]]
            now = time.monotonic()
            if first_t is None:
                first_t = now
                st["first_packet_after_s"] = round(now - t0, 3)
            st["packets"] += 1
            st["bytes"] += len(data)
            st["payload_types"][str(pt)] = st["payload_types"].get(str(pt), 0) + 1
            src = f"{addr[0]}:{addr[1]}"
            if src not in st["sources"]:
                st["sources"].append(src)
            if remote is None:
                remote = addr
                next_send = now
            db = level_db(payload, pt)
            if db is not None:
                dur = len(payload) / 8000
                if db >= args.threshold_db:
                    st["voiced_packets"] += 1
                    voiced_run += dur
                    silent_run = 0.0
                    if not in_speech and voiced_run >= 0.2:
                        in_speech = True
                        st["utterances"].append([round(now - voiced_run - first_t, 2), None])
                else:
                    silent_run += dur
                    if in_speech and silent_run >= 0.8:
                        in_speech = False
                        st["utterances"][-1][1] = round(now - silent_run - first_t, 2)
                        voiced_run = 0.0
                        if say and say_pos == -1:
                            say_pos = 0
                            st["said_at_s"] = round(now - first_t, 2)
                    elif not in_speech and silent_run >= 0.8:
                        voiced_run = 0.0
        now = time.monotonic()
        if remote is not None and now >= next_send:
            if say_pos is not None and say_pos >= 0:
                chunk = say[say_pos : say_pos + 160]
                say_pos += 160
                if say_pos >= len(say):
                    say_pos = None
                chunk = chunk.ljust(160, b"\xff")
            else:
                chunk = b"\xff" * 160
            hdr = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            sock.sendto(hdr + chunk, remote)
            seq += 1
            ts += 160
            st["sent_packets"] += 1
            next_send += 0.02
            if next_send < now - 0.2:  # fell far behind: resync
                next_send = now + 0.02
        if now - last_dump >= 1.0:
            dump()
            last_dump = now
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
