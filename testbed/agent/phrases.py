#!/usr/bin/env python3
"""What the reference agent says and understands: the one table both the
fixture generator (make_fixtures.sh) and the agent (agent.py) read, and the
checks (testbed/agent_check.py) assert against. Standard library only.

  phrases.py festival-script OUT_DIR   Scheme for `festival -b`: every clip
                                       below as OUT_DIR/.NAME.raw.wav
  phrases.py clips                     NAME<TAB>TEXT, one clip a line

Recognition: pocketsphinx keyword spotting (recognizer.py). Each table
entry lists the key phrases that select it, with the detection threshold of
each (pocketsphinx `kws` file syntax: smaller = more eager), set in the
middle (log scale) of the window measured (batch CMN, as the agent decodes)
on 86 utterances: 14 sentences (the caller clips, 5 others, "Do you hear
me?", "… Please tell me the time.") clean, through G.711 mu-law (sox; and a
cruder 8 kHz resampler) and through G.722, and 30 utterances as the agent
received them over LiveKit (a room-level call, two SIP PCMU calls, one SIP
G.722 call). A key phrase is found in all its clips from / the first false
detection comes at:
  you hear me 1e-20 / 1e-40;  order number 1e-30 / none at 1e-50;
  what time 1e-5 / 1e-20;  tell me a story 1e-5 / none at 1e-50;
  stop talking 1e-20 / none at 1e-50.
("hear me" alone: false detections from 1e-20 on "Hello, I would like …".)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

GREETING = "Thank you for calling the callprobe test line. How can I help you?"


@dataclass(frozen=True)
class Reply:
    key: str  # logged in PROBE_EVENT "heard"
    keyphrases: tuple[tuple[str, str], ...]  # (phrase, kws threshold)
    clip: str  # fixture name, without .wav
    text: str  # what the clip says


# Checked in this order when one utterance holds several key phrases: the one
# heard first wins.
REPLIES: tuple[Reply, ...] = (
    Reply("hear", (("you hear me", "1e-30"),), "reply_hear", "Yes, I can hear you."),
    Reply("order_number", (("order number", "1e-40"),), "reply_order_number", "Your order number is four two seven."),
    Reply("time", (("what time", "1e-12"),), "reply_time", "It is time to test."),
    Reply(
        "story",
        (("tell me a story", "1e-30"),),
        "reply_story",
        # about 9 s: long enough for a caller to talk over it (barge-in)
        "Once upon a time, a small robot answered the telephone. "
        "Every caller asked it the same questions. "
        "One day, a tester called to see if it would stop.",
    ),
    Reply("stop", (("stop talking", "1e-35"),), "reply_stop", "Okay, I will stop."),
)
FALLBACK = Reply("fallback", (), "reply_fallback", "Sorry, I did not catch that.")

# SipDTMF digits the agent names ("You pressed one.").
DTMF_WORDS = {
    **{str(i): w for i, w in enumerate("zero one two three four five six seven eight nine".split())},
    "*": "star",
    "#": "pound",
}


def dtmf_clip(digit: str) -> str:
    return "dtmf_" + {"*": "star", "#": "pound"}.get(digit, digit)


# What a caller says (room-level checks, SIP media, and the repo's fixtures/):
# clip name -> (text, the reply key the agent must pick).
CALLER: dict[str, tuple[str, str]] = {
    "caller_hello": ("Hello, can you hear me?", "hear"),
    "caller_order_number": ("What is my order number?", "order_number"),
    "caller_time": ("What time is it?", "time"),
    "caller_story": ("Tell me a story.", "story"),
    "caller_stop": ("Please stop talking.", "stop"),
    # about 4 s, for barge-in; in no table entry
    "caller_long": ("Sorry to interrupt, but I need to speak with somebody else.", "fallback"),
    # the utterance of the smoke test's room-level and SIP calls
    "caller": ("Hello, I would like to check the status of my order, please.", "fallback"),
}


def clips() -> dict[str, str]:
    """Every clip the testbed generates: name -> text."""
    out = {"greeting": GREETING}
    for r in (*REPLIES, FALLBACK):
        out[r.clip] = r.text
    for d, w in DTMF_WORDS.items():
        out[dtmf_clip(d)] = f"You pressed {w}."
    for name, (text, _) in CALLER.items():
        out[name] = text
    return out


def kws_lines() -> str:
    """The pocketsphinx keyphrase file."""
    return "".join(f"{p} /{th}/\n" for r in REPLIES for p, th in r.keyphrases)


def reply_for_keyphrase(phrase: str) -> Reply:
    for r in REPLIES:
        if any(p == phrase for p, _ in r.keyphrases):
            return r
    return FALLBACK


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_script(out_dir: str) -> str:
    lines = [
        "(voice_cmu_us_slt_arctic_hts)",
        "(define (probe_say file text)"
        " (utt.save.wave (utt.synth (eval (list 'Utterance 'Text text))) file 'riff))",
    ]
    for name, text in clips().items():
        lines.append(f"(probe_say {_scheme_string(f'{out_dir}/.{name}.raw.wav')} {_scheme_string(text)})")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "festival-script":
        sys.stdout.write(festival_script(sys.argv[2]))
        return 0
    if len(sys.argv) == 2 and sys.argv[1] == "clips":
        for name, text in clips().items():
            print(f"{name}\t{text}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
