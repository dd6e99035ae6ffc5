"""testbed.env loader shared by the testbed's Python tools.

Same rule as lib.sh: KEY=VALUE lines, and a variable already set in the
environment wins over the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TB_DIR = Path(__file__).resolve().parent
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def load_env(path: Path = TB_DIR / "testbed.env") -> None:
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise SystemExit(f"bad line in {path}: {raw}")
        os.environ.setdefault(m.group(1), m.group(2))


def env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SystemExit(f"{name} is not set (testbed.env or environment)")
    return value


def http_url() -> str:
    """LIVEKIT_URL (ws://...) as the http:// URL the server API uses."""
    url = env("LIVEKIT_URL")
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    return url
