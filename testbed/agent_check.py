#!/usr/bin/env python3
"""Does the reference agent answer what it hears? Checks against its phrase
table (agent/phrases.py), with the agent's own log as the witness.

  agent_check.py offline
      No testbed: the agent's recognizer on every caller clip, clean, through
      G.711 mu-law (8 kHz) and through G.722. Prints the key found and the
      time end_utt took; exit 1 on a wrong key.

  agent_check.py room [--barge-in] [--dtmf 1#*0]
      Room-level caller (no SIP; like probe.py room-call): joins a new room as
      a participant of kind SIP that dispatches the agent, waits for the
      greeting, says each caller clip and checks the agent's PROBE_EVENT
      "heard" key and that a reply follows; publishes SipDTMF packets
      (local_participant.publish_dtmf) and checks "dtmf" + "You pressed …";
      --barge-in: asks for the story, talks over it ("Please stop talking.")
      and measures when the agent's audio stops (interruptible agent) or that
      it goes on and the utterance is "ignored" (PROBE_AGENT_INTERRUPTIBLE=0).

  agent_check.py sip [--codec pcmu|g722] [--barge-in] [--dtmf 1#*0]
      The same over the real SIP path: SIPp places the call through LiveKit
      SIP (digest auth, X-Lk-Test-Id) offering only CODEC + telephone-event;
      an RTP peer in this script speaks the caller clips (G.711 mu-law or
      G.722) and sends the digits as RFC 4733 events.

Prints one JSON object (every utterance: key expected/heard, recognition
time, reply delay; DTMF; barge-in timings) and a last line
"agent_check: N passed, N failed". Exit 0 when all passed.
The agent log is $CALLPROBE_TESTBED_RUN/logs/agent-$PROBE_AGENT_NAME.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import socket
import struct
import subprocess
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
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "agent"))

import phrases  # noqa: E402

SR = 16000
FRAME = SR // 50  # 20 ms
RUN = Path(os.environ.get("CALLPROBE_TESTBED_RUN", HERE / ".run"))
FIXTURES = Path(os.environ.get("PROBE_FIXTURES_DIR", RUN / "fixtures"))
AGENT = os.environ.get("PROBE_AGENT_NAME", "probe-agent")
AGENT_LOG = RUN / "logs" / f"agent-{AGENT}.log"
DTMF_CODES = {**{str(i): i for i in range(10)}, "*": 10, "#": 11}
# Conversation: the caller clips said one after the other, each answered.
SAY = ["caller_hello", "caller_order_number", "caller_time", "caller_stop", "caller", "caller_long"]


def load_wav(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / f"{name}.wav"), "rb") as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2, name
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def speech_onset(x: np.ndarray, threshold_db: float = -40) -> float:
    """Seconds into the clip of its first 20 ms frame above threshold."""
    for i in range(0, len(x) - FRAME, FRAME):
        f = x[i : i + FRAME].astype(np.float32)
        rms = math.sqrt(float(np.mean(f * f))) / 32768
        if rms > 0 and 20 * math.log10(rms) >= threshold_db:
            return i / SR
    return 0.0


# ----------------------------------------------------------------- codecs
def _ulaw_decode_table() -> np.ndarray:
    out = []
    for i in range(256):
        u = ~i & 0xFF
        sign, exponent, mantissa = u & 0x80, (u >> 4) & 7, u & 0x0F
        s = (((mantissa << 3) + 0x84) << exponent) - 0x84
        out.append(-s if sign else s)
    return np.array(out, dtype=np.int16)


ULAW_DEC = _ulaw_decode_table()


def ulaw_encode(x: np.ndarray) -> bytes:
    s = x.astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    m = np.minimum(np.abs(s), 32635) + 0x84
    exp = np.floor(np.log2(m)).astype(np.int32) - 7
    exp = np.clip(exp, 0, 7)
    mant = (m >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8).tobytes()


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Band-limited enough for speech checks: linear interpolation after a
    moving-average low-pass when going down."""
    if src == dst:
        return x
    xf = x.astype(np.float32)
    if dst < src:
        k = src // dst
        xf = np.convolve(xf, np.ones(2 * k - 1) / (2 * k - 1), mode="same")
    n = int(len(xf) * dst / src)
    t = np.arange(n) * src / dst
    return np.clip(np.interp(t, np.arange(len(xf)), xf), -32768, 32767).astype(np.int16)


class G722:
    """G.722 through PyAV (ffmpeg's g722 codec): 16 kHz PCM <-> 8 bytes/ms."""

    def __init__(self) -> None:
        import av

        self.av = av
        self.enc = av.CodecContext.create("g722", "w")
        self.enc.sample_rate, self.enc.layout, self.enc.format = SR, "mono", "s16"
        self.enc.open()
        self.dec = av.CodecContext.create("g722", "r")
        self.dec.sample_rate, self.dec.layout = SR, "mono"
        self.dec.open()
        self._pts = 0
        self._pending = b""

    def encode(self, pcm: np.ndarray) -> bytes:
        f = self.av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        f.sample_rate = SR
        f.pts = self._pts
        self._pts += len(pcm)
        self._pending += b"".join(bytes(p) for p in self.enc.encode(f))
        out, self._pending = self._pending[:160], self._pending[160:]
        return out.ljust(160, b"\x00") if out else b""

    def decode(self, payload: bytes) -> np.ndarray:
        out = [fr.to_ndarray().reshape(-1) for fr in self.dec.decode(self.av.Packet(payload))]
        return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


# ----------------------------------------------------------------- offline
def sox_ulaw(name: str) -> np.ndarray:
    """The clip through sox: 8 kHz G.711 mu-law and back to 16 kHz."""
    enc = subprocess.run(["sox", "-D", str(FIXTURES / f"{name}.wav"), "-r", "8000", "-e", "u-law", "-t", "ul", "-"],
                         check=True, capture_output=True).stdout
    dec = subprocess.run(["sox", "-D", "-t", "ul", "-r", "8000", "-c", "1", "-", "-r", str(SR), "-b", "16",
                          "-e", "signed-integer", "-t", "raw", "-"], input=enc, check=True, capture_output=True).stdout
    return np.frombuffer(dec, np.int16)


def offline() -> dict:
    from recognizer import Recognizer

    rec = Recognizer()
    tail = np.zeros(int(0.7 * SR), np.int16)
    results, ok = [], True
    for name, (text, key) in phrases.CALLER.items():
        x = load_wav(name)
        g = G722()
        paths = {
            "clean": x,
            # G.711 two ways: this script's RTP peer (crude 8 kHz resampler) and sox's
            "pcmu": resample(ULAW_DEC[np.frombuffer(ulaw_encode(resample(x, SR, 8000)), np.uint8)], 8000, SR),
            "pcmu-sox": sox_ulaw(name),
            "g722": np.concatenate([g.decode(g.encode(x[i : i + FRAME])) for i in range(0, len(x) - FRAME + 1, FRAME)]),
        }
        for path, y in paths.items():
            h = rec.recognize(np.concatenate([y, tail]).tobytes())
            good = h.key == key
            ok &= good
            results.append(
                dict(clip=name, path=path, expected=key, heard=h.key, text=h.text, ok=good,
                     finish_ms=h.finish_ms, decode_ms=h.decode_ms, audio_s=h.audio_seconds)
            )
            print(f"{'PASS' if good else 'FAIL'}  {name:22s} {path:8s} expected {key:13s} heard {h.key:13s} "
                  f"({h.text!r}) decode {h.decode_ms:.0f} ms for {h.audio_seconds:.2f} s", file=sys.stderr)
    return {"results": results, "ok": ok}


# ----------------------------------------------------------------- agent log
class AgentLog:
    """PROBE_EVENT lines of the agent log written after this check started."""

    def __init__(self, path: Path = AGENT_LOG) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.events: list[dict] = []

    def poll(self) -> list[dict]:
        if not self.path.exists():
            return self.events
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            i = line.find("PROBE_EVENT ")
            if i >= 0:
                try:
                    self.events.append(json.loads(line[i + len("PROBE_EVENT ") :]))
                except ValueError:
                    pass
        return self.events

    def room_of_test(self, test_id: str) -> str | None:
        for e in self.poll():
            if e.get("event") == "participant" and (e.get("attributes") or {}).get("lktest.id") == test_id:
                return e.get("room")
        return None

    async def wait(self, pred, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.poll():
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)


# ----------------------------------------------------------------- meter
class Meter:
    """Energy VAD on the agent's audio: onsets and ends (wall clock, time.time())."""

    def __init__(self, threshold_db: float = -40.0, end_silence: float = 0.3) -> None:
        self.threshold_db, self.end_silence = threshold_db, end_silence
        self.onsets: list[float] = []
        self.ends: list[float] = []
        self.in_speech = False
        self.last_loud = 0.0
        self._run = 0.0
        self.frames = 0

    def feed(self, pcm: np.ndarray, sr: int) -> None:
        self.frames += 1
        x = pcm.astype(np.float32)
        rms = math.sqrt(float(np.mean(x * x))) / 32768 if x.size else 0.0
        db = 20 * math.log10(rms) if rms > 0 else -120.0
        now = time.time()
        dur = x.size / sr
        if db >= self.threshold_db:
            self.last_loud = now
            self._run += dur
            if not self.in_speech and self._run >= 0.06:
                self.in_speech = True
                self.onsets.append(now - self._run)
        else:
            self._run = 0.0
            if self.in_speech and now - self.last_loud >= self.end_silence:
                self.in_speech = False
                self.ends.append(self.last_loud)

    def speech_since(self, t: float) -> list[float]:
        return [o for o in self.onsets if o >= t]


async def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return bool(pred())


# ----------------------------------------------------------------- caller voice
class Voice:
    """What the caller sends: silence, or the clip being said; 20 ms frames in real time.
    Subclasses deliver a frame (room: AudioSource; SIP: RTP)."""

    def __init__(self) -> None:
        self._queue: list[tuple[np.ndarray, asyncio.Future]] = []
        self._dtmf: list[tuple[str, asyncio.Future]] = []

    def say(self, x: np.ndarray) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((x, fut))
        return fut

    def dtmf(self, digit: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._dtmf.append((digit, fut))
        return fut

    async def send_frame(self, pcm: np.ndarray) -> None:
        raise NotImplementedError

    dtmf_slots = 1  # 20 ms slots one digit takes

    async def send_dtmf(self, digit: str, slot: int) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        silence = np.zeros(FRAME, np.int16)
        t0 = time.monotonic()
        n = 0
        while True:
            if self._dtmf:
                digit, fut = self._dtmf.pop(0)
                started = time.time()
                for slot in range(self.dtmf_slots):  # instead of audio, in the same 20 ms grid
                    await self.send_dtmf(digit, slot)
                    n += 1
                    await self._pace(t0, n)
                fut.set_result(started)
                continue
            if self._queue:
                x, fut = self._queue[0]
                started = time.time()
                for i in range(0, len(x), FRAME):
                    chunk = x[i : i + FRAME]
                    if len(chunk) < FRAME:
                        chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
                    await self.send_frame(chunk)
                    n += 1
                    await self._pace(t0, n)
                self._queue.pop(0)
                fut.set_result(started)
            else:
                await self.send_frame(silence)
                n += 1
                await self._pace(t0, n)

    @staticmethod
    async def _pace(t0: float, n: int) -> None:
        ahead = t0 + n * 0.02 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)


# ----------------------------------------------------------------- conversation
async def conversation(voice: Voice, meter: Meter, log: AgentLog, room_of, args, out: dict) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []

    def ev(name: str, since: float):
        def pred(e: dict) -> bool:
            return e.get("event") == name and e.get("room") == room_of() and e.get("t", 0) >= since - 0.05
        return pred

    # greeting
    if not await wait_until(lambda: bool(meter.onsets), 30):
        return [(False, "no greeting from the agent within 30 s")]
    if not await wait_until(lambda: len(meter.ends) >= 1, 30):
        return [(False, "the greeting did not end")]
    start = await log.wait(ev("job_start", 0), 5) if room_of() else None
    out["room"] = room_of()
    out["interruptible"] = (start or {}).get("interruptible")
    greet = await log.wait(ev("speak_start", 0), 5)
    checks.append((bool(greet and greet.get("clip") == "greeting"), f"greeting spoken ({(greet or {}).get('text')!r})"))
    await asyncio.sleep(0.5)

    out["utterances"] = []
    for name in SAY:
        text, key = phrases.CALLER[name]
        x = load_wav(name)
        t_sent = await voice.say(x)
        t_end = t_sent + len(x) / SR  # end of what we sent (clip incl. 0.3 s lead)
        heard = await log.wait(ev("heard", t_sent), 5)
        spoke = await wait_until(lambda: bool(meter.speech_since(t_end)), 6)
        reply_at = meter.speech_since(t_end)[0] if spoke else None
        await wait_until(lambda: not meter.in_speech and meter.ends and meter.ends[-1] > (reply_at or 0), 15)
        u = dict(clip=name, text=text, expected=key, heard=(heard or {}).get("key"), keyphrase=(heard or {}).get("text"),
                 finish_ms=(heard or {}).get("finish_ms"), decode_ms=(heard or {}).get("decode_ms"),
                 reply=(heard or {}).get("reply"),
                 reply_after_clip_end_s=round(reply_at - t_end, 2) if reply_at else None,
                 vad_end_to_heard_ms=None)
        end_ev = await log.wait(ev("caller_speech_end", t_sent), 1)
        start_ev = await log.wait(ev("caller_speech_start", t_sent), 1)
        # one-way latency to the agent + its VAD's 200 ms of speech before speech_start
        u["agent_vad_start_after_speech_ms"] = round((start_ev["t"] - t_sent - speech_onset(x)) * 1000) if start_ev else None
        if end_ev and heard:
            u["vad_end_to_heard_ms"] = round((heard["t"] - end_ev["t"]) * 1000, 1)
        said = await log.wait(lambda e: ev("speak_start", t_sent)(e) and e.get("clip") == (heard or {}).get("reply"), 1)
        u["reply_start_after_vad_end_s"] = round(said["t"] - end_ev["t"], 3) if said and end_ev else None
        out["utterances"].append(u)
        checks.append((u["heard"] == key and reply_at is not None,
                       f"{name}: {text!r} -> heard {u['heard']} (keyphrase {u['keyphrase']!r}, end_utt {u['finish_ms']} ms), "
                       f"reply {u['reply']} started {u['reply_start_after_vad_end_s']} s after the agent's VAD utterance end "
                       f"(heard at +{u['vad_end_to_heard_ms']} ms), heard by us {u['reply_after_clip_end_s']} s after the clip"))
        await asyncio.sleep(0.4)

    out["dtmf"] = []
    for digit in args.dtmf:
        t_sent = await voice.dtmf(digit)
        got = await log.wait(ev("dtmf", t_sent), 5)
        said = await log.wait(lambda e: ev("speak_start", t_sent)(e) and e.get("clip") == phrases.dtmf_clip(digit), 5)
        spoke = await wait_until(lambda: bool(meter.speech_since(t_sent)), 5)
        onset = meter.speech_since(t_sent)[0] if spoke else None
        await wait_until(lambda: not meter.in_speech and meter.ends and meter.ends[-1] > (onset or 0), 10)
        d = dict(digit=digit, event_digit=(got or {}).get("digit"), said=(said or {}).get("text"),
                 event_after_s=round(got["t"] - t_sent, 3) if got else None,
                 speech_after_s=round(onset - t_sent, 2) if onset else None)
        out["dtmf"].append(d)
        checks.append((d["event_digit"] == digit and d["said"] == f"You pressed {phrases.DTMF_WORDS[digit]}." and onset is not None,
                       f"DTMF {digit}: agent event {d['event_digit']!r} after {d['event_after_s']} s, said {d['said']!r}"))
        await asyncio.sleep(0.3)

    if args.barge_in:
        checks += await barge_in(voice, meter, log, ev, out)
    return checks


async def barge_in(voice: Voice, meter: Meter, log: AgentLog, ev, out: dict) -> list[tuple[bool, str]]:
    interruptible = out.get("interruptible")
    story = load_wav("caller_story")
    t_sent = await voice.say(story)
    started = await log.wait(lambda e: ev("speak_start", t_sent)(e) and e.get("clip") == "reply_story", 6)
    if not started:
        return [(False, "barge-in: the agent did not start the story")]
    await wait_until(lambda: bool(meter.speech_since(t_sent + len(story) / SR)), 5)
    await asyncio.sleep(2.0)  # let it talk
    stop = load_wav("caller_stop")
    onset = speech_onset(stop)
    t_stop_sent = await voice.say(stop)
    t_speech = t_stop_sent + onset  # when our speech began (sender clock)
    b: dict = {"interruptible": interruptible, "caller_clip": "caller_stop", "caller_speech_at": round(t_speech, 3)}
    if interruptible:
        intr = await log.wait(lambda e: ev("interrupted", t_stop_sent)(e), 5)
        vad = await log.wait(lambda e: ev("caller_speech_start", t_stop_sent)(e), 1)
        await wait_until(lambda: meter.ends and meter.ends[-1] > t_speech, 5)
        stop_seen = next((e for e in meter.ends if e > t_speech - 0.1), None)
        b.update(
            interrupted=bool(intr),
            played_seconds=(intr or {}).get("played_seconds"),
            cleared_seconds=(intr or {}).get("cleared_seconds"),
            agent_vad_after_speech_ms=round((vad["t"] - t_speech) * 1000) if vad else None,
            agent_stop_after_vad_ms=round((intr["t"] - vad["t"]) * 1000, 1) if intr and vad else None,
            audio_stopped_after_speech_ms=round((stop_seen - t_speech) * 1000) if stop_seen else None,
        )
        heard = await log.wait(ev("heard", t_stop_sent), 5)
        b["then_heard"] = (heard or {}).get("key")
        await wait_until(lambda: not meter.in_speech and len(meter.speech_since(t_stop_sent + len(stop) / SR)) > 0, 6)
        await wait_until(lambda: not meter.in_speech, 6)
        out["barge_in"] = b
        return [(bool(intr) and stop_seen is not None and b["audio_stopped_after_speech_ms"] < 1000 and b["then_heard"] == "stop",
                 f"barge-in (interruptible): agent VAD {b['agent_vad_after_speech_ms']} ms after our speech began, "
                 f"clip stopped {b['agent_stop_after_vad_ms']} ms after that, its audio stopped at the caller "
                 f"{b['audio_stopped_after_speech_ms']} ms after our speech began; then heard {b['then_heard']}")]
    end = await log.wait(lambda e: ev("speak_end", t_sent)(e) and e.get("clip") == "reply_story", 15)
    ignored = await log.wait(ev("ignored", t_stop_sent), 5)
    intr = [e for e in log.poll() if ev("interrupted", t_stop_sent)(e)]
    b.update(finished=bool(end and not end.get("interrupted")), ignored_key=(ignored or {}).get("key"),
             interrupted=bool(intr),
             story_end_after_speech_s=round(end["t"] - t_speech, 2) if end else None)
    await asyncio.sleep(1.5)
    replies = [e for e in log.poll() if ev("heard", t_stop_sent)(e)]
    b["replied"] = bool(replies)
    out["barge_in"] = b
    return [(b["finished"] and not intr and ignored is not None and not replies,
             f"no barge-in (PROBE_AGENT_INTERRUPTIBLE=0): story finished {b['story_end_after_speech_s']} s after our "
             f"speech began, utterance ignored (key {b['ignored_key']}), no reply")]


# ----------------------------------------------------------------- room-level
async def room_check(args) -> tuple[list, dict]:
    from livekit import api, rtc
    from livekit.protocol.agent_dispatch import RoomAgentDispatch
    from livekit.protocol.room import RoomConfiguration

    test_id = f"agentcheck-{uuid.uuid4().hex[:10]}"
    room_name = f"{tbenv.env('LK_ROOM_PREFIX')}roomcall_{test_id}"
    token = (
        api.AccessToken(tbenv.env("LIVEKIT_API_KEY"), tbenv.env("LIVEKIT_API_SECRET"))
        .with_identity(f"roomcaller_{test_id}")
        .with_kind("sip")
        .with_attributes({"lktest.id": test_id, "sip.callStatus": "active", "probe.caller": "agent-check"})
        .with_grants(api.VideoGrants(room_join=True, room=room_name, can_publish=True, can_subscribe=True,
                                     can_publish_data=True))
        .with_room_config(RoomConfiguration(agents=[RoomAgentDispatch(agent_name=AGENT)]))
        .to_jwt()
    )
    out: dict = {"mode": "room", "test_id": test_id}
    log = AgentLog()
    meter = Meter()
    room = rtc.Room()
    tasks: list[asyncio.Task] = []

    async def consume(track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SR, num_channels=1)
        async for e in stream:
            meter.feed(np.frombuffer(e.frame.data, dtype=np.int16), SR)

    def on_track(track, pub, p) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            tasks.append(asyncio.create_task(consume(track)))

    room.on("track_subscribed", on_track)
    source = rtc.AudioSource(SR, 1)

    class RoomVoice(Voice):
        async def send_frame(self, pcm: np.ndarray) -> None:
            await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), SR, 1, FRAME))

        async def send_dtmf(self, digit: str, slot: int) -> None:
            await room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)

    voice = RoomVoice()
    try:
        await asyncio.wait_for(room.connect(tbenv.env("LIVEKIT_URL"), token), timeout=20)
        track = rtc.LocalAudioTrack.create_audio_track("caller-mic", source)
        await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        tasks.append(asyncio.create_task(voice.run()))
        checks = await conversation(voice, meter, log, lambda: log.room_of_test(test_id), args, out)
    finally:
        for t in tasks:
            t.cancel()
        try:
            await asyncio.wait_for(room.disconnect(), timeout=5)
        except Exception:
            pass
        try:
            async with api.LiveKitAPI(url=tbenv.http_url(), api_key=tbenv.env("LIVEKIT_API_KEY"),
                                      api_secret=tbenv.env("LIVEKIT_API_SECRET")) as lk:
                await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        except Exception:
            pass
    return checks, out


# ----------------------------------------------------------------- SIP
class RtpVoice(Voice, asyncio.DatagramProtocol):
    """RTP peer: sends the caller's audio (PCMU or G.722) and RFC 4733 events
    to wherever the agent's RTP comes from (symmetric RTP), meters what it gets."""

    def __init__(self, codec: str, meter: Meter) -> None:
        Voice.__init__(self)
        self.codec, self.meter = codec, meter
        self.pt = 0 if codec == "pcmu" else 9
        self.g722_tx = G722() if codec == "g722" else None
        self.g722_rx = G722() if codec == "g722" else None
        self.remote = None
        self.got_remote = asyncio.Event()
        self.ssrc, self.seq, self.ts = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        self.transport = None
        self.rx_pts: dict[int, int] = {}
        self.dtmf_pt = 101

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 95:
            return
        if self.remote is None:
            self.remote = addr
            self.got_remote.set()
        pt = data[1] & 0x7F
        self.rx_pts[pt] = self.rx_pts.get(pt, 0) + 1
        off = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= off + 4:
            off += 4 + 4 * struct.unpack("!H", data[off + 2 : off + 4])[0]
        payload = data[off:]
        if pt == 0:
            self.meter.feed(ULAW_DEC[np.frombuffer(payload, np.uint8)], 8000)
        elif pt == 9 and self.g722_rx is not None:
            pcm = self.g722_rx.decode(payload)
            if pcm.size:
                self.meter.feed(pcm, SR)

    def _send(self, pt: int, payload: bytes, ts: int, marker: bool = False) -> None:
        if self.remote is None or self.transport is None:
            return
        hdr = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc)
        self.transport.sendto(hdr + payload, self.remote)
        self.seq += 1

    async def send_frame(self, pcm: np.ndarray) -> None:
        if self.codec == "pcmu":
            payload = ulaw_encode(resample(pcm, SR, 8000))
        else:
            payload = self.g722_tx.encode(pcm) or b"\x00" * 160
        self._send(self.pt, payload, self.ts)
        self.ts += 160  # 8000 Hz RTP clock for both (G.722's is 8000 by RFC 3551)

    dtmf_slots = 8  # RFC 4733: 100 ms tone in 5 packets, then the end packet 3 times

    async def send_dtmf(self, digit: str, slot: int) -> None:
        if slot == 0:
            self._event_ts = self.ts
        end = slot >= 5
        dur = 160 * min(slot + 1, 5)
        payload = struct.pack("!BBH", DTMF_CODES[digit], (0x80 if end else 0) | 10, dur)
        self._send(self.dtmf_pt, payload, self._event_ts, marker=(slot == 0))
        self.ts += 160  # the audio after the event goes on in the same timeline


async def sip_check(args) -> tuple[list, dict]:
    import sipcall

    test_id = f"agentcheck-{uuid.uuid4().hex[:10]}"
    out_dir = RUN / "agent_check" / test_id
    out_dir.mkdir(parents=True, exist_ok=True)
    target = f"127.0.0.1:{tbenv.env('LK_SIP_PORT')}"
    number = tbenv.env("LK_SIP_CALL_NUMBER")
    loop = asyncio.get_running_loop()
    meter = Meter()
    voice = RtpVoice(args.codec, meter)
    transport, _ = await loop.create_datagram_endpoint(lambda: voice, local_addr=("127.0.0.1", 0))
    rtp_port = transport.get_extra_info("sockname")[1]

    sdp_media = {
        "pcmu": "m=audio [rtp_port] RTP/AVP 0 101\n      a=rtpmap:0 PCMU/8000",
        "g722": "m=audio [rtp_port] RTP/AVP 9 101\n      a=rtpmap:9 G722/8000",
    }[args.codec]
    text = (HERE / "sipp" / "uac_call.xml").read_text()
    text = text.replace("m=audio [rtp_port] RTP/AVP 0 101\n      a=rtpmap:0 PCMU/8000", sdp_media)
    text = text.replace("@SIP_USER@", tbenv.env("LK_SIP_USER")).replace("@SIP_PASSWORD@", tbenv.env("LK_SIP_PASSWORD"))
    scenario = out_dir / "uac_call.xml"
    fd = os.open(scenario, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    msg_log = out_dir / "messages.log"
    hold_ms = args.hold_s * 1000
    cmd = [shutil.which("sipp") or "sipp", target, "-sf", str(scenario), "-s", number,
           "-auth_uri", f"{number}@{target}", "-i", "127.0.0.1", "-t", "u1",
           "-key", "test_id", test_id, "-key", "rtp_port", str(rtp_port),
           "-key", "caller", tbenv.env("LK_SIP_CALLER_NUMBER"),
           "-m", "1", "-l", "1", "-d", str(hold_ms), "-recv_timeout", "30000",
           "-timeout", str(args.hold_s + 60), "-timeout_error", "-nostdin",
           "-trace_msg", "-message_file", str(msg_log),
           "-trace_err", "-error_file", str(out_dir / "errors.log")]
    out: dict = {"mode": "sip", "codec": args.codec, "test_id": test_id, "rtp_port": rtp_port, "out_dir": str(out_dir)}
    log = AgentLog()
    sipp = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE)
    vtask = None
    checks: list = []
    try:
        try:
            await asyncio.wait_for(voice.got_remote.wait(), 30)
        except asyncio.TimeoutError:
            return [(False, "no RTP from LiveKit SIP within 30 s")], out
        scenario.unlink(missing_ok=True)
        vtask = asyncio.create_task(voice.run())
        t0 = time.monotonic()
        checks = await conversation(voice, meter, log, lambda: log.room_of_test(test_id), args, out)
        out["conversation_seconds"] = round(time.monotonic() - t0, 1)
    finally:
        scenario.unlink(missing_ok=True)
        if vtask:
            vtask.cancel()
        if sipp.returncode is None:
            sipp.terminate()
        try:
            await asyncio.wait_for(sipp.wait(), 10)
        except asyncio.TimeoutError:
            sipp.kill()
        transport.close()
        msgs = sipcall.parse_messages(msg_log)
        out["responses"] = sipcall.summarize(msgs["received"])
        out["rx_payload_types"] = voice.rx_pts
        m = re.search(r"SIP/2\.0 200 OK.*?(m=audio[^\r\n]*)", msg_log.read_text(errors="replace") if msg_log.exists() else "", re.S)
        out["answer_m_line"] = m.group(1).strip() if m else None
    want_pt = "0" if args.codec == "pcmu" else "9"
    checks.insert(0, (bool(out["answer_m_line"]) and out["answer_m_line"].split()[3] == want_pt and voice.rx_pts.get(int(want_pt), 0) > 50,
                      f"LiveKit SIP answered {out['answer_m_line']!r}; agent RTP payload types {voice.rx_pts}"))
    return checks, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("offline")
    for name in ("room", "sip"):
        p = sub.add_parser(name)
        p.add_argument("--barge-in", action="store_true")
        p.add_argument("--dtmf", default="1#*0", help="digits to send (default 1#*0)")
        if name == "sip":
            p.add_argument("--codec", choices=("pcmu", "g722"), default="pcmu")
            p.add_argument("--hold-s", type=int, default=120, help="SIPp hangs up after this (the check ends it sooner)")
    args = ap.parse_args()
    if args.cmd == "offline":
        out = offline()
        checks = [(r["ok"], "") for r in out["results"]]
    else:
        bad = [d for d in args.dtmf if d not in DTMF_CODES]
        if bad:
            ap.error(f"--dtmf: not a DTMF digit: {bad}")
        checks, out = asyncio.run(room_check(args) if args.cmd == "room" else sip_check(args))
        for ok, msg in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {msg}", file=sys.stderr)
    out["checks"] = [{"ok": ok, "what": msg} for ok, msg in checks]
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    print()
    passed = sum(1 for ok, _ in checks if ok)
    print(f"agent_check: {passed} passed, {len(checks) - passed} failed")
    return 0 if checks and passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
