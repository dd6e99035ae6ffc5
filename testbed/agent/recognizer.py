"""Phrase recognition of the reference agent: pocketsphinx keyword spotting.

The decoder searches only for the key phrases of phrases.REPLIES (a `kws`
search with a threshold per phrase; the en-us acoustic model and dictionary
the pocketsphinx wheel bundles: nothing is downloaded).

Each utterance is decoded whole, once the VAD says it ended, with batch
cepstral mean normalisation (the utterance's own mean): the same clip gives
the same answer whether it came clean, through G.722 or through G.711, and
whatever came before it in the call. (Live CMN, decoding while the caller
speaks, starts from one fixed mean; narrowband G.711 audio is so far from it
that key phrases were missed.) A decode costs ~40 ms of CPU per second of
audio, and pocketsphinx holds the GIL meanwhile, so the agent runs it in a
worker process (`recognizer.py serve`, RecognizerWorker): its event loop
keeps sending audio.

  recognizer.py serve      the worker: reads u32 length + 16 kHz s16le PCM
                           from stdin, writes one JSON line per utterance
  recognizer.py FILE.wav…  recognise 16 kHz mono WAVs, one line each
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import phrases  # noqa: E402

SAMPLE_RATE = 16000
PREROLL_SECONDS = 0.3  # audio kept from before the first loud frame
MAX_UTTERANCE_SECONDS = 15.0  # longer utterances: the last 15 s are decoded


@dataclass
class Heard:
    key: str  # reply key, "fallback" when no key phrase was found
    text: str  # the key phrase found ("" for fallback)
    reply: phrases.Reply
    found: list[str] = field(default_factory=list)  # every key phrase found, in order
    finish_ms: float = 0.0  # utterance end (VAD) -> result, as the agent waited for it
    decode_ms: float = 0.0  # the decode itself (worker CPU)
    audio_seconds: float = 0.0  # audio decoded (pre-roll + speech + trailing silence)
    audio: bytes = b""  # that audio, 16 kHz mono s16le
    error: str = ""  # the worker failed: key is fallback


def make_decoder():
    from pocketsphinx import Decoder

    d = Path(tempfile.mkdtemp(prefix="probe-kws-"))
    kws = d / "keyphrases.kws"
    kws.write_text(phrases.kws_lines())
    dec = Decoder(samprate=SAMPLE_RATE, kws=str(kws), logfn=os.devnull)
    kws.unlink()
    d.rmdir()
    return dec


class Recognizer:
    """In-process decoder (the worker's, and offline checks')."""

    def __init__(self, decoder=None) -> None:
        self._dec = decoder if decoder is not None else make_decoder()
        self._cmn0 = self._dec.get_cmn()

    def decode(self, pcm: bytes) -> dict:
        pcm = pcm[-int(MAX_UTTERANCE_SECONDS * SAMPLE_RATE) * 2 :]
        t = time.perf_counter()
        self._dec.set_cmn(self._cmn0)
        self._dec.start_utt()
        self._dec.process_raw(pcm, False, True)  # full utterance: batch CMN
        self._dec.end_utt()
        segs = sorted(((s.start_frame, s.word.strip()) for s in (self._dec.seg() or ())), key=lambda x: x[0])
        return {
            "found": [w for _, w in segs if w],
            "decode_ms": round((time.perf_counter() - t) * 1000, 1),
            "audio_seconds": round(len(pcm) / 2 / SAMPLE_RATE, 2),
        }

    def recognize(self, pcm: bytes) -> Heard:
        return heard_from(self.decode(pcm), pcm)


def heard_from(result: dict, pcm: bytes, finish_ms: float | None = None) -> Heard:
    found = result.get("found") or []
    reply = phrases.reply_for_keyphrase(found[0]) if found else phrases.FALLBACK
    return Heard(
        key=reply.key,
        text=found[0] if found else "",
        reply=reply,
        found=found,
        finish_ms=result.get("decode_ms", 0.0) if finish_ms is None else finish_ms,
        decode_ms=result.get("decode_ms", 0.0),
        audio_seconds=result.get("audio_seconds", 0.0),
        audio=pcm,
        error=result.get("error", ""),
    )


class UtteranceAudio:
    """Collects one utterance: start() at the first loud frame (with 0.3 s of
    pre-roll), add() every frame until the VAD's end, take() it; cancel() when
    it was no utterance."""

    def __init__(self) -> None:
        self._pre: deque[bytes] = deque()
        self._pre_bytes = 0
        self._max_pre = int(PREROLL_SECONDS * SAMPLE_RATE) * 2
        self._buf: list[bytes] = []
        self.active = False

    def idle(self, pcm: bytes) -> None:
        self._pre.append(pcm)
        self._pre_bytes += len(pcm)
        while self._pre_bytes - len(self._pre[0]) >= self._max_pre:
            self._pre_bytes -= len(self._pre.popleft())

    def start(self) -> None:
        if self.active:
            return
        self.active = True
        self._buf = [b"".join(self._pre)[-self._max_pre :]]
        self._pre.clear()
        self._pre_bytes = 0

    def add(self, pcm: bytes) -> None:
        self._buf.append(pcm)

    def cancel(self) -> None:
        self.active = False
        self._buf = []

    def take(self) -> bytes:
        self.active = False
        out, self._buf = b"".join(self._buf), []
        return out


class RecognizerWorker:
    """`recognizer.py serve` as a child process; recognize() awaits its answer."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "serve",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )

    async def recognize(self, pcm: bytes, t_end: float) -> Heard:
        """t_end: time.monotonic() of the utterance end; finish_ms counts from it."""
        async with self._lock:
            try:
                if self._proc is None or self._proc.returncode is not None:
                    await self.start()
                assert self._proc and self._proc.stdin and self._proc.stdout
                self._proc.stdin.write(struct.pack("!I", len(pcm)) + pcm)
                await self._proc.stdin.drain()
                line = await asyncio.wait_for(self._proc.stdout.readline(), timeout=30)
                result = json.loads(line) if line else {"error": "recognizer worker exited"}
            except Exception as e:  # never let the call die of it: answer the fallback
                result = {"error": f"{type(e).__name__}: {e}"}
        return heard_from(result, pcm, finish_ms=round((time.monotonic() - t_end) * 1000, 1))

    async def close(self) -> None:
        if self._proc and self._proc.returncode is None:
            try:
                assert self._proc.stdin
                self._proc.stdin.close()
                await asyncio.wait_for(self._proc.wait(), timeout=3)
            except Exception:
                self._proc.kill()


def serve() -> int:
    rec = Recognizer()
    inp, out = sys.stdin.buffer, sys.stdout
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return 0
        (n,) = struct.unpack("!I", head)
        pcm = inp.read(n)
        try:
            result = rec.decode(pcm)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(result) + "\n")
        out.flush()


def main() -> int:
    if sys.argv[1:] == ["serve"]:
        return serve()
    if not sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    import wave

    rec = Recognizer()
    for f in sys.argv[1:]:
        with wave.open(f, "rb") as w:
            if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
                print(f"{f}: need 16 kHz mono 16-bit", file=sys.stderr)
                return 2
            h = rec.recognize(w.readframes(w.getnframes()))
        print(json.dumps({"file": f, "key": h.key, "text": h.text, "found": h.found, "decode_ms": h.decode_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
