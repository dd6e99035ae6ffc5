"""Reference voice agent of the callprobe testbed (livekit-agents 1.x, no cloud).

It greets the caller, listens with a simple energy VAD, recognises each
utterance (pocketsphinx keyword spotting in a worker process, recognizer.py;
~60-250 ms after the VAD's utterance end) and answers from the phrase table
of phrases.py, with fixture WAVs spoken by festival's cmu_us_slt_arctic_hts
voice (make_fixtures.sh):

  "... (can) you hear me?" -> key hear          "Yes, I can hear you."
  "... order number ..."   -> key order_number  "Your order number is four two seven."
  "What time ..."          -> key time          "It is time to test."
  "Tell me a story."       -> key story         ~9 s story (something to talk over)
  "... stop talking."      -> key stop          "Okay, I will stop."
  anything else            -> key fallback      "Sorry, I did not catch that."

DTMF (SipDTMF data packets, which LiveKit SIP makes of RFC 4733 events) is
answered "You pressed one." ... "You pressed star." / "You pressed pound.".
When interruptible, caller speech that starts while the agent speaks stops
the clip at once (barge-in). Fault modes reproduce the runbook's failures.

Environment:
  LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET   where the LiveKit server is
  PROBE_AGENT_NAME        agent_name registered for explicit dispatch (probe-agent)
  PROBE_AGENT_MODE        normal | silent | crash | slow-join
  PROBE_AGENT_INTERRUPTIBLE 1 (default): caller speech (VAD caller_speech_start)
                          while the agent speaks stops the clip (PROBE_EVENT
                          "interrupted"); 0: the agent finishes its clip and
                          ignores utterances that began while it spoke
                          (PROBE_EVENT "ignored", no reply)
  PROBE_GREETING_DELAY    seconds between the caller being active and the greeting
  PROBE_RESPONSE_DELAY    seconds between the caller's utterance end (VAD) and the reply
  PROBE_SLOW_JOIN_SECONDS seconds slow-join waits before connecting to the room
  PROBE_FIXTURES_DIR      directory with the clips of make_fixtures.sh
  PROBE_VAD_THRESHOLD_DB  speech threshold in dBFS (default -40)
  PROBE_VAD_MIN_SPEECH_MS speech needed before an utterance counts (default 200)
  PROBE_VAD_END_SILENCE_MS silence that ends an utterance (default 700)
  PROBE_AGENT_HTTP_PORT   worker health port (default 0: any free port)
  PROBE_AGENT_RECORD_DIR  when set, each utterance as the recognizer got it is
                          written there (ROOM-N-KEY.wav, 16 kHz): what the agent heard
  PROBE_MAX_CALL_SECONDS  the agent leaves a call after this long (default 600)
  PROBE_AGENT_MAX_JOBS    concurrent calls before the worker reports full (default 8)
  PROBE_FLAKY_CALLER      calls from this caller number (sip.phoneNumber) are
                          flaky on purpose, in any mode that gets that far: the
                          1st, 3rd, 5th ... stay silent (as in mode silent), the
                          others are normal (PROBE_EVENT "flaky_caller")
  PROBE_STATE_DIR         where the flaky caller's count is kept (flaky-caller.count)

Run: python agent.py start

Every notable step is logged as a line starting with "PROBE_EVENT" (one JSON
object), and mirrored in the agent participant's attribute "probe.state"
("probe.heard" holds the key of the last utterance). Events of a conversation:
caller_speech_start, caller_speech_end, heard {key, text, found, finish_ms,
decode_ms}, ignored (same fields), interrupted {clip, played_seconds,
after_speech_start_ms}, dtmf {digit, code}, speak_start {clip, text}, speak_end.
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

import phrases
from recognizer import Heard, RecognizerWorker, UtteranceAudio

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


_ROOM: str | None = None  # one job per process: every event names its room


def event(name: str, **fields: object) -> None:
    payload = {"event": name, "agent": AGENT_NAME, "t": round(time.time(), 3), **fields}
    if _ROOM is not None:
        payload.setdefault("room", _ROOM)
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
    """Pushes 20 ms frames to an AudioSource in real time: queued clips, else silence.

    interrupt() stops the clip being spoken before its next frame and drops
    what the AudioSource still holds (clear_queue), so the caller hears the
    agent stop within ~20 ms of the call (plus the transport)."""

    def __init__(self, source: rtc.AudioSource) -> None:
        self._source = source
        self._clips: asyncio.Queue[tuple[str, np.ndarray]] = asyncio.Queue()
        self.speaking = False
        self.current = ""
        self._stop_at: float | None = None  # monotonic time interrupt() was asked

    def play(self, name: str, samples: np.ndarray) -> None:
        self._clips.put_nowait((name, samples))

    @property
    def busy(self) -> bool:
        return self.speaking or not self._clips.empty()

    def interrupt(self) -> bool:
        """Stop the current clip (and drop queued ones). True when something was stopped."""
        if not self.busy:
            return False
        while not self._clips.empty():
            name, _ = self._clips.get_nowait()
            event("dropped", clip=name)
        if self.speaking:
            self._stop_at = time.monotonic()
            return True
        return False

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
                self.current = name
                self._stop_at = None
                event("speak_start", clip=name, seconds=round(len(samples) / SAMPLE_RATE, 2), text=CLIP_TEXT.get(name, ""))
                played = 0
                for i in range(0, len(samples), FRAME_SAMPLES):
                    if self._stop_at is not None:
                        break
                    await self._push(samples[i : i + FRAME_SAMPLES])
                    played += FRAME_SAMPLES
                    sent += 1
                    await self._pace(start, sent)
                self.speaking = False
                self.current = ""
                if self._stop_at is not None:
                    queued = self._source.queued_duration
                    if hasattr(self._source, "clear_queue"):
                        self._source.clear_queue()
                    # what the AudioSource held is gone: pace again from now
                    start, sent = time.monotonic(), 0
                    event(
                        "interrupted",
                        clip=name,
                        played_seconds=round(min(played, len(samples)) / SAMPLE_RATE, 2),
                        of_seconds=round(len(samples) / SAMPLE_RATE, 2),
                        cleared_seconds=round(queued, 3),
                        stop_ms=round((time.monotonic() - self._stop_at) * 1000, 1),
                    )
                    self._stop_at = None
                    event("speak_end", clip=name, interrupted=True)
                else:
                    event("speak_end", clip=name, interrupted=False)
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


CLIP_TEXT = phrases.clips()


class Listener:
    """Energy VAD on the caller's audio, collecting each utterance for the recognizer.

    The utterance's audio starts at the first loud frame (with 0.3 s of
    pre-roll) and is dropped when that burst ends up shorter than
    PROBE_VAD_MIN_SPEECH_MS; calls on_speech_start() when the VAD says speech
    (caller_speech_start) and on_utterance_end(pcm, speech_s, t_end) at the
    utterance end (caller_speech_end)."""

    def __init__(self, on_speech_start, on_utterance_end) -> None:
        self.threshold_db = _env_float("PROBE_VAD_THRESHOLD_DB", -40.0)
        self.min_speech = _env_float("PROBE_VAD_MIN_SPEECH_MS", 200.0) / 1000
        self.end_silence = _env_float("PROBE_VAD_END_SILENCE_MS", 700.0) / 1000
        self.on_speech_start = on_speech_start
        self.on_utterance_end = on_utterance_end

    async def run(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        speech_s = 0.0
        silence_s = 0.0
        in_speech = False
        utt = UtteranceAudio()
        try:
            async for ev in stream:
                frame = ev.frame
                raw = frame.data.tobytes()
                pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float32)
                if pcm.size == 0:
                    continue
                rms = math.sqrt(float(np.mean(pcm * pcm))) / 32768.0
                db = 20 * math.log10(rms) if rms > 0 else -120.0
                dur = pcm.size / SAMPLE_RATE
                if db >= self.threshold_db:
                    utt.start()
                    utt.add(raw)
                    speech_s += dur
                    silence_s = 0.0
                    if not in_speech and speech_s >= self.min_speech:
                        in_speech = True
                        event("caller_speech_start", level_db=round(db, 1))
                        self.on_speech_start()
                else:
                    if utt.active:
                        utt.add(raw)
                    else:
                        utt.idle(raw)
                    silence_s += dur
                    if in_speech and silence_s >= self.end_silence:
                        in_speech = False
                        t_end = time.monotonic()
                        event("caller_speech_end", speech_seconds=round(speech_s, 2))
                        self.on_utterance_end(utt.take(), speech_s, t_end)
                        speech_s = 0.0
                    elif not in_speech and silence_s >= self.end_silence:
                        speech_s = 0.0
                        utt.cancel()
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


def _flaky_turn_is_silent(participant: rtc.RemoteParticipant) -> bool:
    """Counts the flaky caller's calls (jobs run in their own processes: the
    count lives in a file) and says whether this one stays silent."""
    flaky = os.environ.get("PROBE_FLAKY_CALLER", "")
    if not flaky or participant.attributes.get("sip.phoneNumber") != flaky:
        return False
    path = Path(os.environ.get("PROBE_STATE_DIR", ".")) / "flaky-caller.count"
    try:
        count = int(path.read_text().strip() or "0") + 1
    except (FileNotFoundError, ValueError):
        count = 1
    path.write_text(f"{count}\n")
    silent = count % 2 == 1
    event("flaky_caller", caller=flaky, count=count, silent=silent)
    return silent


def _interruptible() -> bool:
    raw = os.environ.get("PROBE_AGENT_INTERRUPTIBLE", "1") or "1"
    if raw not in ("0", "1"):
        raise RuntimeError(f"PROBE_AGENT_INTERRUPTIBLE must be 0 or 1, got {raw!r}")
    return raw == "1"


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
    global _ROOM
    _ROOM = ctx.room.name
    interruptible = _interruptible()
    event("job_start", mode=mode, room=ctx.room.name, job_id=ctx.job.id, interruptible=interruptible)

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

    async def set_state(state: str, heard: str | None = None) -> None:
        attrs = {"probe.state": state, "probe.mode": mode}
        if heard is not None:
            attrs["probe.heard"] = heard
        try:
            # Bounded: on a worker's first job the server's answer has been
            # seen to take > 5 s, and the state must never hold up speech.
            await asyncio.wait_for(ctx.room.local_participant.set_attributes(attrs), timeout=1.0)
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

    if _flaky_turn_is_silent(participant):
        mode = "silent"

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
    clips = {name: load_wav(fx / f"{name}.wav") for name in CLIP_TEXT if not name.startswith("caller")}
    greeting_delay = _env_float("PROBE_GREETING_DELAY", 0.5)
    response_delay = _env_float("PROBE_RESPONSE_DELAY", 0.5)
    worker = RecognizerWorker()
    await worker.start()  # loads the decoder (~0.5 s) while the greeting plays

    async def greet() -> None:
        await asyncio.sleep(greeting_delay)
        speaker.play("greeting", clips["greeting"])
        await set_state("greeting")

    tasks.append(asyncio.create_task(greet(), name="greet"))

    replies = 0
    # set at caller_speech_start: the agent was speaking then (barge-in)
    utterance_over_agent = False
    record_dir = os.environ.get("PROBE_AGENT_RECORD_DIR", "")
    utterances = 0

    def on_speech_start() -> None:
        nonlocal utterance_over_agent
        utterance_over_agent = speaker.busy
        if utterance_over_agent and interruptible:
            speaker.interrupt()

    def record(n: int, heard: Heard) -> None:
        path = Path(record_dir) / f"{ctx.room.name}-{n}-{heard.key}.wav"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SAMPLE_RATE)
                w.writeframes(heard.audio)
        except OSError as e:
            log.warning("cannot record %s: %s", path, e)

    def on_utterance_end(pcm: bytes, speech_s: float, t_end: float) -> None:
        nonlocal utterances
        utterances += 1
        n_utt = utterances
        over_agent = utterance_over_agent

        async def understand_and_answer() -> None:
            nonlocal replies
            heard = await worker.recognize(pcm, t_end)
            if record_dir:
                record(n_utt, heard)
            fields = dict(
                key=heard.key,
                text=heard.text,
                found=heard.found,
                reply=heard.reply.clip,
                finish_ms=heard.finish_ms,
                decode_ms=heard.decode_ms,
                audio_seconds=heard.audio_seconds,
                speech_seconds=round(speech_s, 2),
                over_agent=over_agent,
            )
            if heard.error:
                fields["error"] = heard.error
            if over_agent and not interruptible:
                event("ignored", reason="caller spoke while the agent was speaking (PROBE_AGENT_INTERRUPTIBLE=0)", **fields)
                return
            event("heard", **fields)
            replies += 1
            n = replies
            await set_state(f"reply-{n}", heard.key)
            # the reply starts PROBE_RESPONSE_DELAY after the VAD's utterance end
            late = time.monotonic() - t_end - response_delay
            if late > 0:
                event("reply_late", seconds=round(late, 3))
            await asyncio.sleep(max(0.0, -late))
            speaker.play(heard.reply.clip, clips[heard.reply.clip])

        tasks.append(asyncio.create_task(understand_and_answer(), name=f"utterance-{n_utt}"))

    @ctx.room.on("sip_dtmf_received")
    def _on_dtmf(d: rtc.SipDTMF) -> None:
        who = d.participant.identity if d.participant is not None else None
        name = phrases.dtmf_clip(d.digit)
        event("dtmf", digit=d.digit, code=d.code, identity=who, reply=name if name in clips else None)
        if name in clips:
            speaker.play(name, clips[name])

    listening: set[str] = set()

    def maybe_listen(t: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if p.identity != participant.identity or t.kind != rtc.TrackKind.KIND_AUDIO:
            return
        if t.sid in listening:
            return
        listening.add(t.sid)
        event("listening", track_sid=t.sid, interruptible=interruptible)
        listener = Listener(on_speech_start, on_utterance_end)
        tasks.append(asyncio.create_task(listener.run(t), name="vad"))

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
    await worker.close()
    event("job_end", replies=replies)
    ctx.shutdown("caller left")


if __name__ == "__main__":
    cli.run_app(server)
