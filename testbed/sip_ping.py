#!/usr/bin/env python3
"""Health check of LiveKit SIP: send one SIP OPTIONS over UDP to 127.0.0.1:PORT
and exit 0 when any SIP response comes back (v1.0.0 answers 405; it has no
health endpoint). Prints the status line. Usage: sip_ping.py PORT [TIMEOUT_S]"""
import socket
import sys
import uuid


def main() -> int:
    port = int(sys.argv[1])
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    tag = uuid.uuid4().hex
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(timeout)
    local = sock.getsockname()[1]
    msg = (
        f"OPTIONS sip:health@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag[:16]};rport\r\n"
        f"From: <sip:health@127.0.0.1>;tag={tag[:8]}\r\n"
        f"To: <sip:health@127.0.0.1:{port}>\r\n"
        f"Call-ID: {tag}@testbed\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    try:
        sock.sendto(msg.encode(), ("127.0.0.1", port))
        data = sock.recv(65535)
    except OSError as e:
        print(f"no SIP answer on udp/{port}: {e}", file=sys.stderr)
        return 1
    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
    if not first.startswith("SIP/2.0 "):
        print(f"not a SIP response on udp/{port}: {first!r}", file=sys.stderr)
        return 1
    print(first)
    return 0


if __name__ == "__main__":
    sys.exit(main())
