"""A local SMTP server (aiosmtpd) that accepts every message and counts Message-IDs.

    python bench/smtp_sink.py PORT REPORT.json [DATA_DELAY_MS]

``DATA_DELAY_MS`` (default 0) holds each reply to DATA that long, as a relay does that writes
the message to its queue on disk or forwards it across a network before accepting it; without
it the server is a best case no real relay matches (no disk, no network, the same machine).
On SIGTERM it writes {"messages", "unique_message_ids", "duplicates", "cpu_seconds"} to
REPORT.json (``cpu_seconds``: the server's own CPU time, to tell its share from the app's).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

from aiosmtpd.controller import Controller

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class Counting:
    def __init__(self, data_delay: float = 0.0) -> None:
        self.ids: Counter[bytes] = Counter()
        self.data_delay = data_delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        found = MESSAGE_ID.search(envelope.original_content or envelope.content)
        self.ids[found.group(1) if found else b"(none)"] += 1
        return "250 OK"


def main() -> None:
    port, report = int(sys.argv[1]), sys.argv[2]
    handler = Counting(float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    total = sum(handler.ids.values())
    with open(report, "w") as out:
        json.dump(
            {
                "messages": total,
                "unique_message_ids": len(handler.ids),
                "duplicates": total - len(handler.ids),
                "cpu_seconds": round(time.process_time(), 2),
            },
            out,
        )


if __name__ == "__main__":
    main()
