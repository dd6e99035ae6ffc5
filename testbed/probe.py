#!/usr/bin/env python3
"""Room-side checks against the testbed's LiveKit server.

  probe.py find-call --test-id ID [--agent NAME | --no-agent] [--timeout S]
      Find the room whose SIP participant carries lktest.id == ID (the
      X-Lk-Test-Id header of the INVITE); with --agent, also require a
      participant of kind AGENT with lk.agent_name == NAME in that room.
      Prints the room and its participants as JSON. Exit 0 when found.

  probe.py room-call [--agent NAME] [--expect speech|silence|no-agent] ...
      Room-level caller (no SIP involved): joins a new room as a participant of
      kind SIP with sip.callStatus=active and a room config that dispatches
      NAME, like LiveKit SIP does for a dispatch rule; then checks the agent:
        speech:   the agent joins, greets, and answers the caller's utterance
        silence:  the agent joins and publishes audio but never speaks
        no-agent: no agent joins (crash mode, wrong agent name, no worker)
      Prints timings as JSON. Exit 0 when the expectation holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
import wave
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=".*HMAC key.*")

import numpy as np  # noqa: E402

import tbenv  # noqa: E402

tbenv.load_env()

from livekit import api, rtc  # noqa: E402
from livekit.protocol.agent_dispatch import RoomAgentDispatch  # noqa: E402
from livekit.protocol.room import RoomConfiguration  # noqa: E402

KIND_SIP = 3
KIND_AGENT = 4
KIND_NAMES = {0: "STANDARD", 1: "INGRESS", 2: "EGRESS", 3: "SIP", 4: "AGENT"}
SR = 16000
FRAME = SR // 50  # 20 ms


def lkapi() -> api.LiveKitAPI:
    return api.LiveKitAPI(
        url=tbenv.http_url(),
        api_key=tbenv.env("LIVEKIT_API_KEY"),
        api_secret=tbenv.env("LIVEKIT_API_SECRET"),
    )


def pview(p) -> dict:
    return {
        "identity": p.identity,
        "kind": KIND_NAMES.get(int(p.kind), int(p.kind)),
        "state": int(p.state),
        "attributes": dict(p.attributes),
        "tracks": [{"sid": t.sid, "type": int(t.type), "source": int(t.source), "muted": t.muted} for t in p.tracks],
    }


# ------------------------------------------------------------------ find-call
async def find_call(test_id: str, agent: str | None, timeout: float) -> tuple[bool, dict]:
    deadline = time.monotonic() + timeout
    last: dict = {"test_id": test_id, "found": False, "reason": "no room yet"}
    async with lkapi() as lk:
        while time.monotonic() < deadline:
            rooms = (await lk.room.list_rooms(api.ListRoomsRequest())).rooms
            for room in rooms:
                parts = (await lk.room.list_participants(api.ListParticipantsRequest(room=room.name))).participants
                sip = [p for p in parts if int(p.kind) == KIND_SIP and p.attributes.get("lktest.id") == test_id]
                if not sip:
                    continue
                agents = [p for p in parts if int(p.kind) == KIND_AGENT]
                last = {
                    "test_id": test_id,
                    "found": True,
                    "room": room.name,
                    "room_sid": room.sid,
                    "sip_participant": pview(sip[0]),
                    "participants": [pview(p) for p in parts],
                    "agents": [p.attributes.get("lk.agent_name", "") for p in agents],
                }
                if agent is None:
                    return True, last
                if any(p.attributes.get("lk.agent_name") == agent for p in agents):
                    last["agent_ok"] = True
                    return True, last
                last["reason"] = f"no AGENT participant with lk.agent_name={agent} (yet)"
            await asyncio.sleep(0.5)
    return False, last


# ------------------------------------------------------------------ room-call
class Meter:
    """Energy timeline of a subscribed audio track, with speech onset/offset."""

    def __init__(self, threshold_db: float = -40.0) -> None:
        self.threshold_db = threshold_db
        self.frames = 0
        self.speech_onsets: list[float] = []
        self.speech_ends: list[float] = []
        self.in_speech = False
        self._speech = 0.0
        self._silence = 0.0
        self.changed = asyncio.Event()

    def feed(self, pcm: np.ndarray) -> None:
        self.frames += 1
        x = pcm.astype(np.float32)
        rms = math.sqrt(float(np.mean(x * x))) / 32768.0 if x.size else 0.0
        db = 20 * math.log10(rms) if rms > 0 else -120.0
        dur = x.size / SR
        now = time.monotonic()
        if db >= self.threshold_db:
            self._speech += dur
            self._silence = 0.0
            if not self.in_speech and self._speech >= 0.15:
                self.in_speech = True
                self.speech_onsets.append(now - self._speech)
                self.changed.set()
        else:
            self._silence += dur
            if self.in_speech and self._silence >= 0.6:
                self.in_speech = False
                self.speech_ends.append(now - self._silence)
                self._speech = 0.0
                self.changed.set()
            elif not self.in_speech and self._silence >= 0.6:
                self._speech = 0.0


async def wait_until(pred, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def load_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


async def play(source: rtc.AudioSource, samples: np.ndarray) -> None:
    start = time.monotonic()
    for n, i in enumerate(range(0, len(samples), FRAME)):
        chunk = samples[i : i + FRAME]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), SR, 1, FRAME))
        ahead = start + (n + 1) * 0.02 - time.monotonic()
        if ahead > 0.1:
            await asyncio.sleep(ahead - 0.1)


async def room_call(args) -> tuple[bool, dict]:
    test_id = args.test_id or f"roomcall-{uuid.uuid4().hex[:10]}"
    room_name = f"{tbenv.env('LK_ROOM_PREFIX')}roomcall_{test_id}"
    identity = f"roomcaller_{test_id}"
    token = (
        api.AccessToken(tbenv.env("LIVEKIT_API_KEY"), tbenv.env("LIVEKIT_API_SECRET"))
        .with_identity(identity)
        .with_name("Room-level caller")
        .with_kind("sip")
        .with_attributes({"lktest.id": test_id, "sip.callStatus": "active", "probe.caller": "room-level"})
        .with_grants(api.VideoGrants(room_join=True, room=room_name, can_publish=True, can_subscribe=True))
        .with_room_config(RoomConfiguration(agents=[RoomAgentDispatch(agent_name=args.agent)]))
        .to_jwt()
    )
    out: dict = {"test_id": test_id, "room": room_name, "agent_name": args.agent, "expect": args.expect}
    room = rtc.Room()
    meter = Meter(args.threshold_db)
    agent_seen: dict = {}
    stream_tasks: list[asyncio.Task] = []
    t0 = time.monotonic()

    def on_participant(p: rtc.RemoteParticipant) -> None:
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not agent_seen:
            agent_seen.update(
                identity=p.identity, attributes=dict(p.attributes), joined_after_s=round(time.monotonic() - t0, 2)
            )

    async def consume(track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SR, num_channels=1)
        try:
            async for ev in stream:
                meter.feed(np.frombuffer(ev.frame.data, dtype=np.int16))
        finally:
            await stream.aclose()

    def on_track(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            out.setdefault("agent_track_after_s", round(time.monotonic() - t0, 2))
            stream_tasks.append(asyncio.create_task(consume(track)))

    room.on("participant_connected", on_participant)
    room.on("track_subscribed", on_track)
    ok = False
    try:
        await asyncio.wait_for(room.connect(tbenv.env("LIVEKIT_URL"), token), timeout=20)
        for p in room.remote_participants.values():
            on_participant(p)
        source = rtc.AudioSource(SR, 1)
        track = rtc.LocalAudioTrack.create_audio_track("caller-mic", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )

        joined = await wait_until(lambda: bool(agent_seen), args.join_timeout)
        out["agent"] = agent_seen or None
        if args.expect == "no-agent":
            ok = not joined
            out["result"] = "no agent joined" if ok else "an agent joined"
            return ok, out
        if not joined:
            out["result"] = f"no agent joined within {args.join_timeout}s"
            return False, out
        if agent_seen["attributes"].get("lk.agent_name") != args.agent:
            out["result"] = f"agent lk.agent_name={agent_seen['attributes'].get('lk.agent_name')!r}"
            return False, out
        if not await wait_until(lambda: meter.frames > 0, 10):
            out["result"] = "no audio frames from the agent"
            return False, out
        t_audio = time.monotonic()
        out["agent_audio_after_s"] = round(t_audio - t0, 2)

        if args.expect == "silence":
            spoke = await wait_until(lambda: bool(meter.speech_onsets), args.silence_window)
            out["frames"] = meter.frames
            ok = not spoke
            out["result"] = f"no speech in {args.silence_window}s" if ok else "the agent spoke"
            return ok, out

        # speech: greeting, then our utterance, then the reply
        if not await wait_until(lambda: bool(meter.speech_onsets), args.greeting_timeout):
            out["result"] = f"no greeting within {args.greeting_timeout}s of the agent's audio"
            return False, out
        out["greeting_after_join_s"] = round(meter.speech_onsets[0] - t0, 2)
        if not await wait_until(lambda: len(meter.speech_ends) >= 1, 30):
            out["result"] = "greeting did not end"
            return False, out
        out["greeting_seconds"] = round(meter.speech_ends[0] - meter.speech_onsets[0], 2)

        caller = load_wav(Path(os.environ["PROBE_FIXTURES_DIR"]) / "caller.wav")
        await play(source, caller)
        t_said = time.monotonic()
        out["caller_utterance_seconds"] = round(len(caller) / SR, 2)
        if not await wait_until(lambda: len(meter.speech_onsets) >= 2, args.reply_timeout):
            out["result"] = f"no reply within {args.reply_timeout}s after the caller's utterance"
            return False, out
        out["reply_after_utterance_end_s"] = round(meter.speech_onsets[1] - t_said, 2)
        await wait_until(lambda: len(meter.speech_ends) >= 2, 15)
        if len(meter.speech_ends) >= 2:
            out["reply_seconds"] = round(meter.speech_ends[1] - meter.speech_onsets[1], 2)
        out["result"] = "greeted and replied"
        ok = True
        return ok, out
    finally:
        for t in stream_tasks:
            t.cancel()
        try:
            await asyncio.wait_for(room.disconnect(), timeout=5)
        except Exception:
            pass
        try:
            async with lkapi() as lk:
                await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        except Exception:
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("find-call")
    f.add_argument("--test-id", required=True)
    g = f.add_mutually_exclusive_group()
    g.add_argument("--agent", default=None)
    g.add_argument("--no-agent", action="store_true")
    f.add_argument("--timeout", type=float, default=30)
    r = sub.add_parser("room-call")
    r.add_argument("--agent", default=os.environ.get("PROBE_AGENT_NAME", "probe-agent"))
    r.add_argument("--expect", choices=("speech", "silence", "no-agent"), default="speech")
    r.add_argument("--test-id")
    r.add_argument("--join-timeout", type=float, default=15)
    r.add_argument("--greeting-timeout", type=float, default=15)
    r.add_argument("--reply-timeout", type=float, default=15)
    r.add_argument("--silence-window", type=float, default=8)
    r.add_argument("--threshold-db", type=float, default=-40)
    args = ap.parse_args()
    if args.cmd == "find-call":
        ok, out = asyncio.run(find_call(args.test_id, None if args.no_agent else args.agent, args.timeout))
    else:
        os.environ.setdefault(
            "PROBE_FIXTURES_DIR", str(Path(os.environ.get("CALLPROBE_TESTBED_RUN", tbenv.TB_DIR / ".run")) / "fixtures")
        )
        ok, out = asyncio.run(room_call(args))
    out["ok"] = ok
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
