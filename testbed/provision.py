#!/usr/bin/env python3
"""Provision the testbed's LiveKit SIP config through the server API (livekit-api).

  provision.py apply [--fault no-agents|no-auth|missing-number|other-agent|srtp-required|srtp-allowed]
  provision.py show

apply finds the inbound trunk and the dispatch rule by name (LK_TRUNK_NAME,
LK_RULE_NAME) and updates them in place; it creates them only when missing.
It never deletes first: when duplicates with our name exist, the first is
updated, the rule is switched to it, and only then are the extras deleted
(runbook: update in place or create-then-switch-then-delete).

Clean config:
  trunk: numbers LK_SIP_NUMBERS, digest auth LK_SIP_USER / LK_SIP_PASSWORD
  rule:  individual, room_prefix LK_ROOM_PREFIX, room_config.agents =
         [PROBE_AGENT_NAME], set through the SIPDispatchRuleInfo wrapper
Faults:
  no-agents       rule without room_config.agents (room made, no agent dispatched)
  no-auth         trunk without credentials (calls are not challenged)
  missing-number  trunk without LK_SIP_CALL_NUMBER (the number the smoke dials)
  other-agent     rule dispatches PROBE_OTHER_AGENT_NAME instead of the probe agent
  srtp-required   trunk media_encryption REQUIRE (plain-RTP offers get 500)
  srtp-allowed    trunk media_encryption ALLOW (SRTP when offered)

Output: JSON on stdout. The trunk password is never printed ("<set>" / "").
"""

from __future__ import annotations

import argparse
import os
import asyncio
import json
import sys

import warnings

from google.protobuf.json_format import MessageToDict

import tbenv

warnings.filterwarnings("ignore", message=".*HMAC key.*")

tbenv.load_env()

from livekit import api  # noqa: E402
from livekit.protocol.agent_dispatch import RoomAgentDispatch  # noqa: E402
from livekit.protocol.room import RoomConfiguration  # noqa: E402
from livekit.protocol.sip import (  # noqa: E402
    CreateSIPDispatchRuleRequest,
    CreateSIPInboundTrunkRequest,
    DeleteSIPDispatchRuleRequest,
    DeleteSIPTrunkRequest,
    ListSIPDispatchRuleRequest,
    ListSIPInboundTrunkRequest,
    SIPDispatchRule,
    SIPDispatchRuleIndividual,
    SIPDispatchRuleInfo,
    SIPInboundTrunkInfo,
    SIPMediaEncryption,
)

FAULTS = ("no-agents", "no-auth", "missing-number", "other-agent", "srtp-required", "srtp-allowed")


def lkapi() -> api.LiveKitAPI:
    return api.LiveKitAPI(
        url=tbenv.http_url(),
        api_key=tbenv.env("LIVEKIT_API_KEY"),
        api_secret=tbenv.env("LIVEKIT_API_SECRET"),
    )


def numbers() -> list[str]:
    return [n.strip() for n in tbenv.env("LK_SIP_NUMBERS").split(",") if n.strip()]


def desired_trunk(fault: str | None) -> SIPInboundTrunkInfo:
    nums = numbers()
    if fault == "missing-number":
        call = tbenv.env("LK_SIP_CALL_NUMBER")
        nums = [n for n in nums if n != call]
        if not nums:
            raise SystemExit("missing-number fault: LK_SIP_NUMBERS has no number besides LK_SIP_CALL_NUMBER")
    trunk = SIPInboundTrunkInfo(
        name=tbenv.env("LK_TRUNK_NAME"),
        numbers=nums,
        metadata=json.dumps({"owner": "callprobe-testbed", "fault": fault or ""}),
    )
    if fault != "no-auth":
        trunk.auth_username = tbenv.env("LK_SIP_USER")
        trunk.auth_password = tbenv.env("LK_SIP_PASSWORD")
    if fault == "srtp-required":
        trunk.media_encryption = SIPMediaEncryption.SIP_MEDIA_ENCRYPT_REQUIRE
    elif fault == "srtp-allowed":
        trunk.media_encryption = SIPMediaEncryption.SIP_MEDIA_ENCRYPT_ALLOW
    rt = os.environ.get("LK_SIP_RINGING_TIMEOUT", "")
    if rt:
        trunk.ringing_timeout.seconds = int(rt)
    return trunk


def desired_rule(trunk_id: str, fault: str | None) -> SIPDispatchRuleInfo:
    room_config = RoomConfiguration()
    if fault != "no-agents":
        agent_name = (
            tbenv.env("PROBE_OTHER_AGENT_NAME") if fault == "other-agent" else tbenv.env("PROBE_AGENT_NAME")
        )
        room_config.agents.append(RoomAgentDispatch(agent_name=agent_name))
    return SIPDispatchRuleInfo(
        name=tbenv.env("LK_RULE_NAME"),
        trunk_ids=[trunk_id],
        rule=SIPDispatchRule(
            dispatch_rule_individual=SIPDispatchRuleIndividual(room_prefix=tbenv.env("LK_ROOM_PREFIX"))
        ),
        room_config=room_config,
        metadata=json.dumps({"owner": "callprobe-testbed", "fault": fault or ""}),
    )


def trunk_view(t: SIPInboundTrunkInfo) -> dict:
    d = MessageToDict(t, preserving_proto_field_name=True)
    if d.get("auth_password"):
        d["auth_password"] = "<set>"
    return d


def rule_view(r: SIPDispatchRuleInfo) -> dict:
    d = MessageToDict(r, preserving_proto_field_name=True)
    d["agents"] = [a.agent_name for a in r.room_config.agents]
    return d


async def apply(fault: str | None) -> dict:
    out: dict = {"fault": fault or "none", "actions": []}
    async with lkapi() as lk:
        trunk_name = tbenv.env("LK_TRUNK_NAME")
        rule_name = tbenv.env("LK_RULE_NAME")

        trunks = [t for t in (await lk.sip.list_inbound_trunk(ListSIPInboundTrunkRequest())).items if t.name == trunk_name]
        want = desired_trunk(fault)
        if trunks:
            keep = trunks[0]
            want.sip_trunk_id = keep.sip_trunk_id
            trunk = await lk.sip.update_inbound_trunk(keep.sip_trunk_id, want)
            out["actions"].append(f"updated trunk {trunk.sip_trunk_id}")
        else:
            trunk = await lk.sip.create_inbound_trunk(CreateSIPInboundTrunkRequest(trunk=want))
            out["actions"].append(f"created trunk {trunk.sip_trunk_id}")

        rules = [r for r in (await lk.sip.list_dispatch_rule(ListSIPDispatchRuleRequest())).items if r.name == rule_name]
        want_rule = desired_rule(trunk.sip_trunk_id, fault)
        if rules:
            keep_rule = rules[0]
            want_rule.sip_dispatch_rule_id = keep_rule.sip_dispatch_rule_id
            rule = await lk.sip.update_dispatch_rule(keep_rule.sip_dispatch_rule_id, want_rule)
            out["actions"].append(f"updated rule {rule.sip_dispatch_rule_id}")
        else:
            rule = await lk.sip.create_dispatch_rule(CreateSIPDispatchRuleRequest(dispatch_rule=want_rule))
            out["actions"].append(f"created rule {rule.sip_dispatch_rule_id}")

        # Only now, with the kept trunk and rule live, remove duplicates.
        for extra in rules[1:]:
            await lk.sip.delete_dispatch_rule(DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=extra.sip_dispatch_rule_id))
            out["actions"].append(f"deleted duplicate rule {extra.sip_dispatch_rule_id}")
        for extra in trunks[1:]:
            await lk.sip.delete_trunk(DeleteSIPTrunkRequest(sip_trunk_id=extra.sip_trunk_id))
            out["actions"].append(f"deleted duplicate trunk {extra.sip_trunk_id}")

        # Verify what the server now holds (runbook: verify after every change).
        check_t = (await lk.sip.list_inbound_trunk(ListSIPInboundTrunkRequest(trunk_ids=[trunk.sip_trunk_id]))).items
        check_r = (
            await lk.sip.list_dispatch_rule(ListSIPDispatchRuleRequest(dispatch_rule_ids=[rule.sip_dispatch_rule_id]))
        ).items
        if len(check_t) != 1 or len(check_r) != 1:
            raise SystemExit(f"verification failed: trunks={len(check_t)} rules={len(check_r)}")
        t, r = check_t[0], check_r[0]
        problems = []
        if list(t.numbers) != list(want.numbers):
            problems.append(f"trunk numbers {list(t.numbers)} != {list(want.numbers)}")
        if bool(t.auth_username) != bool(want.auth_username):
            problems.append("trunk auth not as requested")
        if [a.agent_name for a in r.room_config.agents] != [a.agent_name for a in want_rule.room_config.agents]:
            problems.append(
                f"rule agents {[a.agent_name for a in r.room_config.agents]} != "
                f"{[a.agent_name for a in want_rule.room_config.agents]}"
            )
        if list(r.trunk_ids) != [trunk.sip_trunk_id]:
            problems.append(f"rule trunk_ids {list(r.trunk_ids)} != [{trunk.sip_trunk_id}]")
        if problems:
            raise SystemExit("verification failed: " + "; ".join(problems))
        out["trunk"] = trunk_view(t)
        out["rule"] = rule_view(r)
    return out


async def show() -> dict:
    async with lkapi() as lk:
        trunks = (await lk.sip.list_inbound_trunk(ListSIPInboundTrunkRequest())).items
        rules = (await lk.sip.list_dispatch_rule(ListSIPDispatchRuleRequest())).items
    return {"trunks": [trunk_view(t) for t in trunks], "rules": [rule_view(r) for r in rules]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply", help="apply the clean config or a fault config")
    a.add_argument("--fault", choices=FAULTS)
    sub.add_parser("show", help="print trunks and rules as JSON")
    args = ap.parse_args()
    try:
        result = asyncio.run(apply(args.fault) if args.cmd == "apply" else show())
    except api.TwirpError as e:
        print(f"provision.py {args.cmd}: LiveKit API error: {e.code}: {e.message}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
