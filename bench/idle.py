#!/usr/bin/env python3
"""Opens N idle SMTP sessions (greeted, EHLO done) to etrnd and prints its RSS.

    bench/idle.py [N]        (starts its own daemon from target/release)
"""
import os, re, socket, subprocess, sys, tempfile, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(top, "target/release/etrnd")
d = tempfile.mkdtemp(prefix="etrnd-idle.")
os.makedirs(os.path.join(d, "db"))
open(os.path.join(d, "etrnd.conf"), "w").write(
    "MAILVAR=.\nPOSTOFFICE=spool\nPIDFILE=etrnd.pid\nLISTEN=127.0.0.1:0\n"
    "HOSTNAME=bench.example\nHOSTS_ORDER=files\nMAX_CONNECTIONS=%d\nMAX_CONNECTIONS_PER_IP=%d\n" % (n + 10, n + 10))
open(os.path.join(d, "db/routes"), "w").write(".client.dom smtp-etrn!mail.client.dom\n")
log = open(os.path.join(d, "log"), "w+")
p = subprocess.Popen([binary, "-d", "-f", os.path.join(d, "etrnd.conf")], stderr=log)
port = None
for _ in range(100):
    log.seek(0)
    m = re.search(r"listening address=127\.0\.0\.1:(\d+)", log.read())
    if m:
        port = int(m.group(1))
        break
    time.sleep(0.05)

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
