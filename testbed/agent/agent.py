"""Reference voice agent of the callprobe testbed (livekit-agents 1.x, no cloud).

It greets the caller with a fixture WAV, listens with a simple energy VAD, and
answers each utterance with a second fixture WAV. Fault modes reproduce the
runbook's failures.

Environment:
  LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET   where the LiveKit server is
  PROBE_AGENT_NAME        agent_name registered for explicit dispatch (probe-agent)
  PROBE_AGENT_MODE        normal | silent | crash | slow-join
  PROBE_GREETING_DELAY    seconds between the caller being active and the greeting
  PROBE_RESPONSE_DELAY    seconds between the caller's utterance end and the reply
  PROBE_SLOW_JOIN_SECONDS seconds slow-join waits before connecting to the room
  PROBE_FIXTURES_DIR      directory with greeting.wav and reply.wav
  PROBE_VAD_THRESHOLD_DB  speech threshold in dBFS (default -40)
  PROBE_VAD_MIN_SPEECH_MS speech needed before an utterance counts (default 200)
  PROBE_VAD_END_SILENCE_MS silence that ends an utterance (default 700)
  PROBE_AGENT_HTTP_PORT   worker health port (default 0: any free port)
  PROBE_MAX_CALL_SECONDS  the agent leaves a call after this long (default 600)
  PROBE_AGENT_MAX_JOBS    concurrent calls before the worker reports full (default 8)

Run: python agent.py start

Every notable step is logged as a line starting with "PROBE_EVENT" (one JSON
object), and mirrored in the agent participant's attribute "probe.state".
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import wave
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import AgentServer, JobContext, cli
from livekit.agents import utils as agent_utils

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000

AGENT_NAME = os.environ.get("PROBE_AGENT_NAME", "probe-agent")
MODES = ("normal", "silent", "crash", "slow-join")

log = logging.getLogger("probe-agent")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}")


def event(name: str, **fields: object) -> None:
    payload = {"event": name, "agent": AGENT_NAME, "t": round(time.time(), 3), **fields}
    # print, not log: one parseable line per event whatever the log config is
    print("PROBE_EVENT " + json.dumps(payload, sort_keys=True), flush=True)


def load_wav(path: Path) -> np.ndarray:
    """16 kHz mono int16 samples of a WAV file (as made by make_fixtures.sh)."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise RuntimeError(
                f"{path}: need 16 kHz mono 16-bit, got {w.getframerate()} Hz "
                f"{w.getnchannels()} ch {8 * w.getsampwidth()} bit"
            )
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def fixtures_dir() -> Path:
    d = os.environ.get("PROBE_FIXTURES_DIR")
    if not d:
        raise RuntimeError("PROBE_FIXTURES_DIR is not set (testbed/up sets it)")
    return Path(d)


class Speaker:
    """Pushes 20 ms frames to an AudioSource in real time: queued clips, else silence."""

    def __init__(self, source: rtc.AudioSource) -> None:
        self._source = source
        self._clips: asyncio.Queue[tuple[str, np.ndarray]] = asyncio.Queue()
        self.speaking = False

    def play(self, name: str, samples: np.ndarray) -> None:
        self._clips.put_nowait((name, samples))

    async def _push(self, chunk: np.ndarray) -> None:
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
        frame = rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES)
        await self._source.capture_frame(frame)

    async def run(self) -> None:
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        start = time.monotonic()
        sent = 0
        while True:
            if not self._clips.empty():
                name, samples = self._clips.get_nowait()
                self.speaking = True
                event("speak_start", clip=name, seconds=round(len(samples) / SAMPLE_RATE, 2))
                for i in range(0, len(samples), FRAME_SAMPLES):
                    await self._push(samples[i : i + FRAME_SAMPLES])
                    sent += 1
                    await self._pace(start, sent)
                self.speaking = False
                event("speak_end", clip=name)
            else:
                await self._push(silence)
                sent += 1
                await self._pace(start, sent)

    @staticmethod
    async def _pace(start: float, sent: int) -> None:
        # AudioSource buffers up to 1 s; keep at most ~100 ms ahead of real time.
        ahead = start + sent * FRAME_MS / 1000 - time.monotonic()
        if ahead > 0.1:
            await asyncio.sleep(ahead - 0.1)


async def listen(
    track: rtc.Track, on_utterance_end, speaker: Speaker
) -> None:
    """Energy VAD on the caller's audio; calls on_utterance_end(duration_s)."""
    threshold_db = _env_float("PROBE_VAD_THRESHOLD_DB", -40.0)
    min_speech = _env_float("PROBE_VAD_MIN_SPEECH_MS", 200.0) / 1000
    end_silence = _env_float("PROBE_VAD_END_SILENCE_MS", 700.0) / 1000
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    speech_s = 0.0
    silence_s = 0.0
    in_speech = False
    try:
        async for ev in stream:
            frame = ev.frame
            pcm = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32)
            if pcm.size == 0:
                continue
            rms = math.sqrt(float(np.mean(pcm * pcm))) / 32768.0
            db = 20 * math.log10(rms) if rms > 0 else -120.0
            dur = pcm.size / SAMPLE_RATE
            if db >= threshold_db:
                speech_s += dur
                silence_s = 0.0
                if not in_speech and speech_s >= min_speech:
                    in_speech = True
                    event("caller_speech_start", level_db=round(db, 1))
            else:
                silence_s += dur
                if in_speech and silence_s >= end_silence:
                    in_speech = False
                    event("caller_speech_end", speech_seconds=round(speech_s, 2))
                    on_utterance_end(speech_s)
                    speech_s = 0.0
                elif not in_speech and silence_s >= end_silence:
                    speech_s = 0.0
    finally:
        await stream.aclose()


def caller_is_active(p: rtc.RemoteParticipant) -> bool:
    # LiveKit SIP sets sip.callStatus: ringing -> active (after its 200 OK) -> hangup.
    if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
        return p.attributes.get("sip.callStatus", "active") == "active"
    return True


def _load(srv: AgentServer) -> float:
    # The default load is the host's CPU use: on a 2-core CI box busy with
    # builds the worker marks itself full and jobs go undispatched. Count jobs.
    return min(1.0, len(srv.active_jobs) / max(1.0, _env_float("PROBE_AGENT_MAX_JOBS", 8)))


server = AgentServer(
    port=int(os.environ.get("PROBE_AGENT_HTTP_PORT", "0") or 0),
    num_idle_processes=1,
    load_fnc=_load,
    load_threshold=0.99,
)


@server.rtc_session(agent_name=AGENT_NAME)
async def entrypoint(ctx: JobContext) -> None:
    mode = os.environ.get("PROBE_AGENT_MODE", "normal")
    if mode not in MODES:
        raise RuntimeError(f"PROBE_AGENT_MODE must be one of {MODES}, got {mode!r}")
    event("job_start", mode=mode, room=ctx.room.name, job_id=ctx.job.id)

    if mode == "crash":
        # Runbook #3: wait for the participant before connecting. livekit-agents
        # 1.8's JobContext.wait_for_participant() now connects by itself, so call
        # the underlying helper the old code path used: it raises
        # RuntimeError("room is not connected").
        event("crash_wait_before_connect")
        await agent_utils.wait_for_participant(ctx.room)

    if mode == "slow-join":
        delay = _env_float("PROBE_SLOW_JOIN_SECONDS", 10.0)
        event("slow_join_sleep", seconds=delay)
        await asyncio.sleep(delay)

    await ctx.connect()  # MUST come before wait_for_participant
    event("connected", identity=ctx.room.local_participant.identity)

    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("probe-agent-voice", source)
    opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await ctx.room.local_participant.publish_track(track, opts)
    speaker = Speaker(source)
    tasks: list[asyncio.Task] = [asyncio.create_task(speaker.run(), name="speaker")]
    event("track_published", track="probe-agent-voice")

    async def set_state(state: str) -> None:
        try:
            await ctx.room.local_participant.set_attributes({"probe.state": state, "probe.mode": mode})
        except Exception as e:  # attributes are a convenience, never fatal
            log.warning("set_attributes failed: %s", e)

    await set_state("waiting")
    participant = await ctx.wait_for_participant()
    event(
        "participant",
        identity=participant.identity,
        kind=int(participant.kind),
        attributes=dict(participant.attributes),
    )

    done = asyncio.Event()

    @ctx.room.on("participant_disconnected")
    def _on_left(p: rtc.RemoteParticipant) -> None:
        if p.identity == participant.identity:
            event("participant_left", identity=p.identity)
            done.set()

    if participant.identity not in ctx.room.remote_participants:
        done.set()

    active = asyncio.Event()
    if caller_is_active(participant):
        active.set()

    @ctx.room.on("participant_attributes_changed")
    def _on_attrs(changed: dict, p: rtc.Participant) -> None:
        if p.identity == participant.identity and caller_is_active(participant):  # type: ignore[arg-type]
            active.set()

    try:
        await asyncio.wait_for(active.wait(), timeout=300)
    except asyncio.TimeoutError:
        event("caller_never_active")
        ctx.shutdown("caller never became active")
        return
    event("caller_active", identity=participant.identity)

    if mode == "silent":
        await set_state("silent")
        event("silent_mode_no_speech")
        try:
            await asyncio.wait_for(done.wait(), timeout=_env_float("PROBE_MAX_CALL_SECONDS", 600.0))
        except asyncio.TimeoutError:
            event("max_call_seconds_reached")
        for t in tasks:
            t.cancel()
        ctx.shutdown("caller left")
        return

    fx = fixtures_dir()
    greeting = load_wav(fx / "greeting.wav")
    reply = load_wav(fx / "reply.wav")
    greeting_delay = _env_float("PROBE_GREETING_DELAY", 0.5)
    response_delay = _env_float("PROBE_RESPONSE_DELAY", 0.5)

    async def greet() -> None:
        await asyncio.sleep(greeting_delay)
        await set_state("greeting")
        speaker.play("greeting", greeting)

    tasks.append(asyncio.create_task(greet(), name="greet"))

    replies = 0

    def on_utterance_end(_speech_s: float) -> None:
        nonlocal replies
        replies += 1
        n = replies

        async def answer() -> None:
            await asyncio.sleep(response_delay)
            await set_state(f"reply-{n}")
            speaker.play("reply", reply)

        tasks.append(asyncio.create_task(answer(), name=f"answer-{n}"))

    listening: set[str] = set()

    def maybe_listen(t: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if p.identity != participant.identity or t.kind != rtc.TrackKind.KIND_AUDIO:
            return
        if t.sid in listening:
            return
        listening.add(t.sid)
        event("listening", track_sid=t.sid)
        tasks.append(asyncio.create_task(listen(t, on_utterance_end, speaker), name="vad"))

    ctx.room.on("track_subscribed", maybe_listen)
    for pub in participant.track_publications.values():
        if pub.track is not None:
            maybe_listen(pub.track, pub, participant)  # type: ignore[arg-type]

    max_call = _env_float("PROBE_MAX_CALL_SECONDS", 600.0)
    try:
        await asyncio.wait_for(done.wait(), timeout=max_call)
    except asyncio.TimeoutError:
        event("max_call_seconds_reached", seconds=max_call)
    for t in tasks:
        t.cancel()
    event("job_end", replies=replies)
    ctx.shutdown("caller left")


if __name__ == "__main__":
    cli.run_app(server)
