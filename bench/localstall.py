#!/usr/bin/env python3
"""The loop's responsiveness while local deliveries fail en masse (reference/bad-input.md
K91): MESSAGES messages for one user whose mailbox defers (a directory stands where the
mbox should be), retried every few seconds, and then `etrnd queue requeue ALL` of them.
Meanwhile a probe client connects every 0.5 s and times the wait for its 220. Prints the
worst and median greeting wait during the retries and during the requeue (target: worst
<= 100 ms), and how long the requeue command took.

    python3 bench/localstall.py [MESSAGES] [SECONDS]

ETRND_BIN names another binary to measure (the default is target/release/etrnd).
"""
import os, pwd, shutil, smtplib, socket, statistics, subprocess, sys, threading, time

import benchlib
from benchlib import start_etrnd

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
if os.environ.get("ETRND_BIN"):
    benchlib.BIN = os.environ["ETRND_BIN"]

user = "etrnd-bench" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
sched = ('*/* interval=3s retries="1" expiry=1d\nlocal/* command=local\n'
         'smtp*/* queueonly command=smtp\n')
p, port, d = start_etrnd("localstall", "MAILBOX=mail\nHOSTNAME=mx.bench.example\nGREET_PAUSE=0\n",
                         ". error!no\n", {"scheduler.conf": sched, "db/localnames": "bench.example\n"})
try:
    os.makedirs(f"{d}/mail", exist_ok=True)
    os.chmod(f"{d}/mail", 0o1777)
    # The trap: a directory where the recipient's mbox goes.
    os.makedirs(f"{d}/mail/{user}")

    def submit(k):
        s = smtplib.SMTP("127.0.0.1", port, timeout=60)
        for i in range(k):
            s.sendmail("a@b.example", [f"{user}@bench.example"], f"Subject: {i}\r\n\r\nx\r\n")
        s.quit()

    t0 = time.time()
    workers = [threading.Thread(target=submit, args=(n // 10,)) for _ in range(10)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"submitted {n // 10 * 10} messages in {time.time() - t0:.1f} s")

    waits = []  # (time, seconds)
    stop = False

    def probe():
        while not stop:
            t = time.time()
            c = socket.create_connection(("127.0.0.1", port), timeout=60)
            c.recv(512)
            waits.append((t, time.time() - t))
            c.sendall(b"QUIT\r\n")
            c.close()
            time.sleep(0.5)

    th = threading.Thread(target=probe)
    th.start()
    retry_from = time.time()
    time.sleep(seconds)
    retry_to = time.time()
    t = time.time()
    out = subprocess.run([benchlib.BIN, "-f", f"{d}/etrnd.conf", "queue", "requeue", "ALL"],
                         capture_output=True, text=True)
    requeue_took = time.time() - t
    time.sleep(3)
    stop = True
    th.join()
    retry = [w for (at, w) in waits if retry_from <= at < retry_to]
    req = [w for (at, w) in waits if at >= retry_to]
    log = open(f"{d}/log/etrnd").read()
    print(f"deferral lines logged: {log.count('status=deferred')}")
    print(f"requeue: {out.stdout.strip() or out.stderr.strip()} in {requeue_took * 1000:.0f} ms")
    for name, xs in (("retries", retry), ("requeue", req)):
        if xs:
            print(f"greeting wait during {name}: probes {len(xs)} median "
                  f"{statistics.median(xs) * 1000:.1f} ms worst {max(xs) * 1000:.1f} ms")
finally:
    p.terminate()
    p.wait()
    if os.environ.get("ETRND_BENCH_KEEP"):
        print(f"kept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)
