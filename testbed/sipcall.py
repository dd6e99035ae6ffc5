#!/usr/bin/env python3
"""Place one SIPp call at the testbed and report what happened, as JSON.

  sipcall.py [--scenario call|noauth] [--creds good|bad|none]
             [--target 127.0.0.1:5060] [--transport udp|tcp]
             [--number +14144007103] [--test-id ID] [--hold-ms 12000]
             [--recv-timeout-ms 60000] [--check-agent NAME|--check-no-agent]
             [--out-dir DIR]

What it does:
  * starts sipp/rtp_peer.py on a free loopback UDP port; SIPp's SDP offers
    that port (PCMU), so the agent's RTP lands there and is counted/decoded;
  * runs SIPp (sipp/uac_call.xml or sipp/uac_noauth.xml) with the header
    X-Lk-Test-Id: ID; credentials go into a 0600 scenario copy, never argv;
  * with --check-agent, while the call is up, looks the room up through the
    LiveKit API (probe.find_call): the SIP participant with lktest.id == ID
    and an AGENT participant with lk.agent_name == NAME;
  * parses SIPp's message log: every response received (status, reason,
    CSeq) and the Proxy-Authenticate challenge.
Exit 0 when SIPp reported success (and the room check passed, if asked).
The password is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*HMAC key.*")

import tbenv  # noqa: E402

tbenv.load_env()

HERE = Path(__file__).resolve().parent
SIPP_DIR = HERE / "sipp"


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_messages(path: Path) -> dict:
    """Responses received and requests sent, in order, from SIPp's -trace_msg log."""
    out: dict = {"received": [], "sent": [], "challenge": None}
    if not path.exists():
        return out
    text = path.read_text(errors="replace")
    blocks = re.split(r"^-{10,}.*$", text, flags=re.M)
    for block in blocks:
        head = re.search(r"(UDP|TCP|TLS|SCTP) message (received|sent)", block)
        if not head:
            continue
        direction = head.group(2)
        start = re.search(r"^\s*(SIP/2\.0 (\d{3}) ([^\r\n]*)|([A-Z]+) (\S+) SIP/2\.0)\s*$", block, flags=re.M)
        if not start:
            continue
        cseq = re.search(r"^\s*CSeq:\s*([^\r\n]+)$", block, flags=re.M | re.I)
        entry: dict = {"cseq": cseq.group(1).strip() if cseq else ""}
        if start.group(2):
            entry.update(status=int(start.group(2)), reason=start.group(3).strip())
        else:
            entry.update(method=start.group(4))
        if direction == "received" and entry.get("status") in (401, 407):
            ch = re.search(r"^\s*(Proxy-Authenticate|WWW-Authenticate):\s*([^\r\n]+)$", block, flags=re.M | re.I)
            if ch:
                out["challenge"] = f"{ch.group(1)}: {ch.group(2).strip()}"
        if direction == "sent" and entry.get("method") == "INVITE":
            entry["proxy_authorization"] = bool(
                re.search(r"^\s*Proxy-Authorization:", block, flags=re.M | re.I)
            )
            entry["authorization"] = bool(re.search(r"^\s*Authorization:", block, flags=re.M | re.I))
        out[direction].append(entry)
    return out


def summarize(received: list[dict]) -> list[str]:
    """'407 Unauthorized' lines in order, consecutive duplicates collapsed as xN."""
    lines: list[str] = []
    prev, n = None, 0
    for r in received:
        if "status" not in r:
            continue
        cur = f"{r['status']} {r['reason']} ({r['cseq']})"
        if cur == prev:
            n += 1
            continue
        if prev is not None:
            lines.append(prev + (f" x{n}" if n > 1 else ""))
        prev, n = cur, 1
    if prev is not None:
        lines.append(prev + (f" x{n}" if n > 1 else ""))
    return lines


async def run(args) -> tuple[bool, dict]:
    test_id = args.test_id or f"smoke-{uuid.uuid4().hex[:12]}"
    out_dir = Path(args.out_dir or (Path(os.environ.get("CALLPROBE_TESTBED_RUN", HERE / ".run")) / "sipp" / test_id))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = args.target or f"127.0.0.1:{tbenv.env('LK_SIP_PORT')}"
    number = args.number or tbenv.env("LK_SIP_CALL_NUMBER")
    caller = tbenv.env("LK_SIP_CALLER_NUMBER")

    # Credentials go into a 0600 copy of the scenario (deleted after the call),
    # never on the command line or in an injection file that SIPp would log.
    user = tbenv.env("LK_SIP_USER")
    password = {"good": tbenv.env("LK_SIP_PASSWORD"), "bad": "wrong-password", "none": ""}[args.creds]
    if args.creds == "none":
        user = ""
    for name, v in (("LK_SIP_USER", user), ("LK_SIP_PASSWORD", password)):
        if re.search(r"[\s\]\[]", v):
            raise SystemExit(f"{name} must not contain spaces or square brackets (SIPp keyword syntax)")
    rtp_port = free_udp_port()
    rtp_out = out_dir / "rtp.json"
    fixtures = Path(os.environ.get("CALLPROBE_TESTBED_RUN", HERE / ".run")) / "fixtures"
    peer_cmd = [sys.executable, str(SIPP_DIR / "rtp_peer.py"), "--port", str(rtp_port), "--out", str(rtp_out),
                "--max-seconds", str(int((args.recv_timeout_ms + args.hold_ms) / 1000) + 60)]
    if (fixtures / "caller.ulaw").exists():
        peer_cmd += ["--say", str(fixtures / "caller.ulaw")]
    peer = subprocess.Popen(peer_cmd, stdin=subprocess.DEVNULL)

    template = SIPP_DIR / ("uac_call.xml" if args.scenario == "call" else "uac_noauth.xml")
    scenario = out_dir / template.name
    fd = os.open(scenario, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(template.read_text().replace("@SIP_USER@", user).replace("@SIP_PASSWORD@", password))
    msg_log = out_dir / "messages.log"
    err_log = out_dir / "errors.log"
    screen = out_dir / "screen.log"
    for p in (msg_log, err_log, screen):
        p.unlink(missing_ok=True)
    sipp_cmd = [
        shutil.which("sipp") or "sipp", target,
        "-sf", str(scenario),
        "-s", number,
        # digest uri = the Request-URI (SIPp's default is sip:<remote host>)
        "-auth_uri", f"{number}@{target}",  # SIPp prefixes "sip:"
        "-i", "127.0.0.1",
        "-t", "u1" if args.transport == "udp" else "t1",
        "-key", "test_id", test_id,
        "-key", "rtp_port", str(rtp_port),
        "-key", "caller", caller,
        "-m", "1", "-l", "1",
        "-d", str(args.hold_ms),
        "-recv_timeout", str(args.recv_timeout_ms),
        "-timeout", str(int((args.recv_timeout_ms + args.hold_ms) / 1000) + 30), "-timeout_error",
        "-nostdin",
        "-trace_msg", "-message_file", str(msg_log),
        "-trace_err", "-error_file", str(err_log),
        "-trace_screen", "-screen_file", str(screen),
    ]
    result: dict = {
        "test_id": test_id,
        "scenario": scenario.name,
        "creds": args.creds,
        "target": target,
        "transport": args.transport,
        "number": number,
        "rtp_port": rtp_port,
        "out_dir": str(out_dir),
    }
    t0 = time.monotonic()
    sipp = await asyncio.create_subprocess_exec(
        *sipp_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    room_ok = True
    try:
        check = None
        if args.check_agent or args.check_no_agent:
            import probe

            check = asyncio.create_task(
                probe.find_call(test_id, args.check_agent, timeout=(args.recv_timeout_ms + args.hold_ms) / 1000)
            )
        total = (args.recv_timeout_ms + args.hold_ms) / 1000 + 45
        try:
            _, err = await asyncio.wait_for(sipp.communicate(), timeout=total)
        except asyncio.TimeoutError:
            sipp.kill()
            _, err = await sipp.communicate()
            result["sipp_killed_after_s"] = total
        result["sipp_exit"] = sipp.returncode
        result["sipp_stderr"] = (err or b"").decode(errors="replace").strip()[-2000:]
        result["seconds"] = round(time.monotonic() - t0, 2)
        if check is not None:
            if not check.done():
                check.cancel()
                found, room = False, {"reason": "call ended before the room check passed"}
            else:
                found, room = check.result()
            result["room"] = room
            if args.check_agent:
                room_ok = found and bool(room.get("agent_ok"))
            else:  # --check-no-agent: the SIP participant is there, no agent
                room_ok = found and not room.get("agents")
            result["room_ok"] = room_ok
    finally:
        if sipp.returncode is None:
            sipp.kill()
        scenario.unlink(missing_ok=True)
        peer.send_signal(signal.SIGTERM)
        try:
            peer.wait(timeout=5)
        except subprocess.TimeoutExpired:
            peer.kill()
    msgs = parse_messages(msg_log)
    result["responses"] = summarize(msgs["received"])
    result["challenge"] = msgs["challenge"]
    result["invites_sent"] = [m for m in msgs["sent"] if m.get("method") == "INVITE"]
    try:
        result["rtp"] = json.loads(rtp_out.read_text())
    except (OSError, ValueError):
        result["rtp"] = None
    ok = result["sipp_exit"] == 0 and room_ok
    return ok, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=("call", "noauth"), default="call")
    ap.add_argument("--creds", choices=("good", "bad", "none"), default="good")
    ap.add_argument("--target")
    ap.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    ap.add_argument("--number")
    ap.add_argument("--test-id")
    ap.add_argument("--hold-ms", type=int, default=12000)
    ap.add_argument("--recv-timeout-ms", type=int, default=60000)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check-agent", metavar="NAME")
    g.add_argument("--check-no-agent", action="store_true")
    ap.add_argument("--out-dir")
    args = ap.parse_args()
    ok, result = asyncio.run(run(args))
    result["ok"] = ok
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
