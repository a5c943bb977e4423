"""A simulator killed outright takes its broker with it (simulator/lifeline.py):
before, a benchmark stopped with SIGKILL left Mosquitto and the gateway
running, holding their ports and a CPU."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from simulator.processes import ROOT, wait_for


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_broker_dies_with_the_process_that_started_it(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from simulator.broker import Mosquitto
        broker = Mosquitto({str(tmp_path / "broker")!r}).start()
        print(broker.proc.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        time.sleep(0.5)
        assert alive(child)                      # it lives as long as its parent does
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not alive(child), 10, "the orphaned broker to exit")
    finally:
        parent.kill()
