#!/usr/bin/env python3
"""One held destination with 100,000 messages released by one ETRN: the first
connection, the drain, the worst wait for a 220 during it (a probe connects every
50 ms), and the daemon's RSS at the end.

    python3 bench/holddest.py

The spool is built by examples/spool_writer.rs (cargo build --release --example
spool_writer first) under /var/tmp; the sink is bench/holdstore.py's.
"""
import os, sys, time, socket, subprocess, shutil, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import holdstore  # noqa: E402
sink = holdstore.Sink()
d, port = holdstore.etrnd_dir("/var/tmp", "big", sink.port, 1)
subprocess.run([holdstore.TOP + "/target/release/examples/spool_writer", f"{d}/spool", "100000", "1"], check=True)
subprocess.run(["chown", "-R", "etrnd-bench:", f"{d}/spool"], check=True)
p, t0 = holdstore.start(holdstore.BIN, d)
print("first 220: %.3f s" % holdstore.first_220(port, t0))
worst = [0.0]; stop = threading.Event()
def probe():
    while not stop.is_set():
        t = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10); s.recv(100); s.close()
        except OSError:
            pass
        worst[0] = max(worst[0], time.monotonic() - t)
        time.sleep(0.05)
threading.Thread(target=probe, daemon=True).start()
t0 = time.monotonic()
s = socket.create_connection(("127.0.0.1", port)); s.recv(512); s.sendall(b"EHLO b\r\n"); s.recv(512)
s.sendall(b"ETRN c0.example\r\n"); print("reply:", s.recv(512).decode().strip())
sink.wait(100000, limit=600)
print("drain of 100000 from one destination: %.1f s, first connection %.1f ms, worst 220 latency during it %.0f ms, RSS %d KiB" % (
    (sink.last or t0) - t0, (sink.accepts[0] - t0) * 1000, worst[0] * 1000, holdstore.rss(p.pid)))
stop.set(); holdstore.stop(p); shutil.rmtree(d)
