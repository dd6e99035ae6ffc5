#!/usr/bin/env python3
"""Verdicts for testbed/smoke: read one JSON result, print one line, exit 0/1.

  smoke_checks.py provision FILE      provision.py apply output
  smoke_checks.py room-call FILE      probe.py room-call output
  smoke_checks.py sip-auth FILE       sipcall.py --scenario call --creds good --check-agent
  smoke_checks.py sip-noauth FILE     sipcall.py --scenario noauth
  smoke_checks.py sip-badpw FILE      sipcall.py --scenario call --creds bad
  smoke_checks.py sip-summary FILE    responses / challenge / sipp exit, no verdict
"""

from __future__ import annotations

import json
import sys


def statuses(d: dict) -> list[int]:
    return [int(x.split()[0]) for x in d.get("responses", [])]


def sip_summary(d: dict) -> str:
    s = "responses: " + ("; ".join(d.get("responses", [])) or "none")
    if d.get("challenge"):
        s += " | challenge: " + d["challenge"]
    return s + " | sipp exit " + str(d.get("sipp_exit"))


def provision(d: dict) -> tuple[bool, str]:
    t, r = d["trunk"], d["rule"]
    prefix = r["rule"]["dispatch_rule_individual"]["room_prefix"]
    return True, (
        "; ".join(d["actions"])
        + f" | numbers {t['numbers']} | auth user {t.get('auth_username')} | rule agents {r['agents']}"
        + f" | room_prefix {prefix}"
    )


def room_call(d: dict) -> tuple[bool, str]:
    if not d.get("ok"):
        return False, str(d.get("result"))
    a = d["agent"]
    return True, (
        f"agent {a['identity']} ({a['attributes'].get('lk.agent_name')}) joined after {a['joined_after_s']}s, "
        f"greeting after {d['greeting_after_join_s']}s ({d['greeting_seconds']}s long), "
        f"reply {d['reply_after_utterance_end_s']}s after the caller's utterance"
    )


def sip_auth(d: dict) -> tuple[bool, str]:
    st = statuses(d)
    probs = []
    if d.get("sipp_exit") != 0:
        probs.append(f"sipp exit {d.get('sipp_exit')}")
    if 407 not in st:
        probs.append("no 407 challenge")
    if 200 not in st or (407 in st and st.index(200) < st.index(407)):
        probs.append("no 200 after the challenge")
    room = d.get("room") or {}
    if not d.get("room_ok"):
        probs.append(f"room check: {room.get('reason', room.get('agents'))}")
    elif room["sip_participant"]["attributes"].get("lktest.id") != d["test_id"]:
        probs.append("lktest.id mismatch")
    r = d.get("rtp") or {}
    if r.get("packets", 0) < 50:
        probs.append(f"only {r.get('packets', 0)} RTP packets from the agent")
    if r.get("voiced_packets", 0) < 25:
        probs.append(f"no speech in the agent's RTP ({r.get('voiced_packets', 0)} voiced packets)")
    if probs:
        return False, "; ".join(probs)
    sp = room["sip_participant"]
    return True, (
        f"room {room['room']}: SIP participant {sp['identity']} lktest.id={d['test_id']} "
        f"sip.callStatus={sp['attributes'].get('sip.callStatus')}, agents {room['agents']}; "
        f"RTP from {r['sources']}: {r['packets']} packets (payload types {list(r['payload_types'])}), "
        f"{r['voiced_packets']} voiced, far-end utterances {r['utterances']}"
    )


def sip_noauth(d: dict) -> tuple[bool, str]:
    st = statuses(d)
    if d.get("sipp_exit") == 0 and 407 in st and 200 not in st:
        return True, [x for x in d["responses"] if x.startswith("407 ")][0]
    return False, "not challenged with 407: " + sip_summary(d)


def sip_badpw(d: dict) -> tuple[bool, str]:
    answered = any(x.startswith("200 ") and "INVITE" in x for x in d.get("responses", []))
    if answered:
        return False, "answered 200 with a wrong password"
    return True, "not answered; last response: " + ((d.get("responses") or ["none"])[-1])


CHECKS = {
    "provision": provision,
    "room-call": room_call,
    "sip-auth": sip_auth,
    "sip-noauth": sip_noauth,
    "sip-badpw": sip_badpw,
}


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in (*CHECKS, "sip-summary"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        d = json.load(open(sys.argv[2]))
    except (OSError, ValueError) as e:
        print(f"no usable result in {sys.argv[2]}: {e}")
        return 1
    if sys.argv[1] == "sip-summary":
        print(sip_summary(d))
        return 0
    try:
        ok, msg = CHECKS[sys.argv[1]](d)
    except (KeyError, IndexError, TypeError) as e:
        ok, msg = False, f"unexpected result shape ({type(e).__name__}: {e})"
    print(msg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
