#!/usr/bin/env python3
"""CPU use of a daemon whose next hop has stalled, with mail waiting behind it.

A local server answers every command but never the end of the message (a stalled
next hop). Two messages for it are queued; with maxthr=1 the second waits behind the
first. Prints the daemon's CPU ticks (user + system, from /proc) over SECONDS:
a loop that waits does not spin.

    bench/stall.py [SECONDS]     (starts its own daemon from target/release)
"""
import os, shutil, socket, sys, threading, time

from benchlib import start_etrnd

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0

sink = socket.socket()
sink.bind(("127.0.0.1", 0))
sink.listen(8)
sinkport = sink.getsockname()[1]
held = []


def stalled(c):
    c.sendall(b"220 stall.example ESMTP\r\n")
    f = c.makefile("rb")
    in_data = False
    for line in f:
        if in_data:
            continue  # swallow the body and never answer the dot
        cmd = line[:4].upper()
        if cmd == b"DATA":
            c.sendall(b"354 go on\r\n")
            in_data = True
        elif cmd == b"EHLO":
            c.sendall(b"250-stall.example\r\n250 PIPELINING\r\n")
        else:
            c.sendall(b"250 ok\r\n")


def serve():
    while True:
        c, _ = sink.accept()
        held.append(c)
        threading.Thread(target=stalled, args=(c,), daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
sched = ('*/* interval=1m retries="1" expiry=1d\n'
         "smtp/* maxthr=1 command=smtp\nlocal/* command=local\n")
p, port, d = start_etrnd("stall", "HOSTNAME=bench.example\n",
                         ".stall.example smtp![127.0.0.1]:%d\n" % sinkport,
                         {"scheduler.conf": sched})


def send(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                return line

    reply()
    for cmd in (b"EHLO bench.example", b"MAIL FROM:<s@bench.example>",
                b"RCPT TO:<u@stall.example>", b"DATA"):
        s.sendall(cmd + b"\r\n")
        reply()
    s.sendall(b"Subject: stall %d\r\n\r\nbody\r\n.\r\n" % n)
    assert reply().startswith(b"250"), "queued"
    s.sendall(b"QUIT\r\n")
    s.close()


def ticks():
    fields = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


try:
    send(1)
    deadline = time.time() + 10
    while not held and time.time() < deadline:
        time.sleep(0.05)
    send(2)
    time.sleep(1)
    t0, c0 = time.time(), ticks()
    time.sleep(seconds)
    t1, c1 = time.time(), ticks()
    hz = os.sysconf("SC_CLK_TCK")
    used = (c1 - c0) / hz / (t1 - t0) * 100
    print("stalled next hop, 1 message in flight, 1 waiting: %d CPU ticks in %.1f s "
          "(%d ticks/s): %.2f %% CPU" % (c1 - c0, t1 - t0, hz, used))
finally:
    p.terminate()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)
