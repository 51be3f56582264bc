"""Run the ``flask`` CLI at a given moment: ``python run_at.py ISO-TIME --app surveillance …``.

Lets the multi-process tests drive real ``flask jobs run …`` processes on the tests' clock.
The clock ticks from that moment, as a real process's would.
"""

from __future__ import annotations

import sys

import time_machine
from flask.cli import main

if __name__ == "__main__":
    moment = sys.argv.pop(1)
    sys.argv[0] = "flask"
    with time_machine.travel(moment, tick=True):
        main()
