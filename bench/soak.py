#!/usr/bin/env python3
"""Soak: mixed load with connection churn for a while; prints the daemon's RSS and
open descriptors every interval, which must stay flat.

    python3 bench/soak.py [SECONDS] [INTERVAL]      (default 1800 s, 60 s)

Load: 4 senders (a new SMTP connection every 20 messages; they pause while more than
2,000 messages are queued) to a held domain and to a domain delivered to Postfix's
smtp-sink, an ETRN every second, and 20 idle connections opened and closed every
interval.
"""
import os, shutil, socket, smtplib, subprocess, sys, threading, time

from benchlib import TOP, start_etrnd
secs = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
every = int(sys.argv[2]) if len(sys.argv) > 2 else 60

subprocess.run(["cargo", "build", "--release", "-q"], cwd=TOP, check=True)
s = socket.socket(); s.bind(("127.0.0.1", 0)); sinkport = s.getsockname()[1]; s.close()
sink = subprocess.Popen(["smtp-sink", "-u", "root", f"127.0.0.1:{sinkport}", "1000"])
p, port, d = start_etrnd(
    "soak", "HOSTNAME=soak.example\nHOSTS_FILE=hosts\nMAX_CONNECTIONS_PER_IP=100\n",
    f".client.dom smtp-etrn![127.0.0.1]:{sinkport}\n.sink.example smtp![127.0.0.1]:{sinkport}\n",
    {"hosts": "", "scheduler.conf": "*/* interval=10s retries=\"1\" expiry=1d\n"
     "smtp-etrn/* queueonly command=smtp\nsmtp*/* command=smtp\nlocal/* command=local\n"})

stop = threading.Event()
sent = [0]


def sender(k):
    n = 0
    while not stop.is_set():
        # Keep the load sustainable: a soak looks for leaks, not for a growing queue.
        if len(os.listdir(f"{d}/spool/queue")) > 2000:
            time.sleep(0.2)
            continue
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                for _ in range(20):
                    to = "u@client.dom" if n % 2 else "u@sink.example"
                    c.sendmail("s@soak.example", [to], f"Subject: {k}-{n}\r\n\r\n{'x' * 900}\r\n")
                    n += 1; sent[0] += 1
        except Exception:
            time.sleep(0.5)


def etrn():
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.ehlo(); c.docmd("ETRN", "client.dom")
        except Exception:
            pass
        time.sleep(1)


threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)] + [threading.Thread(target=etrn)]
for t in threads:
    t.start()


def sample():
    rss = next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS"))
    fds = len(os.listdir(f"/proc/{p.pid}/fd"))
    return rss, fds


print(f"{'t (s)':>6} {'RSS KiB':>8} {'fds':>5} {'sent':>8} {'queued':>7}")
t0 = time.time()
try:
    while time.time() - t0 < secs:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        time.sleep(every)
        for c in idle:
            c.close()
        rss, fds = sample()
        q = len(os.listdir(f"{d}/spool/queue"))
        print(f"{int(time.time() - t0):>6} {rss:>8} {fds:>5} {sent[0]:>8} {q:>7}", flush=True)
finally:
    stop.set()
    for t in threads:
        t.join()
    p.terminate(); p.wait(); sink.terminate()
    shutil.rmtree(d, ignore_errors=True)
