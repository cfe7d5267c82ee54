#!/usr/bin/env python3
"""Opens N idle SMTP sessions (greeted, EHLO done) to etrnd and prints its RSS.

    bench/idle.py [N]        (starts its own daemon from target/release)
"""
import shutil, socket, sys, time

from benchlib import start_etrnd

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
p, port, d = start_etrnd(
    "idle", "HOSTNAME=bench.example\nMAX_CONNECTIONS=%d\nMAX_CONNECTIONS_PER_IP=%d\n" % (n + 10, n + 10),
    ".client.dom smtp-etrn!mail.client.dom\n")

def rss():
    for line in open("/proc/%d/status" % p.pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
print("idle RSS: %d KiB" % rss())
socks = []
try:
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.recv(512)
        s.sendall(b"EHLO idle.example\r\n")
        socks.append(s)
    for s in socks:
        s.recv(512)
    time.sleep(0.5)
    print("%d idle sessions RSS: %d KiB" % (len(socks), rss()))
finally:
    for s in socks:
        s.close()
    p.terminate()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)
