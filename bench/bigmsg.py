#!/usr/bin/env python3
"""Memory of relaying one large message: the daemon's peak RSS (VmHWM) before it, and
after the message was received, queued and delivered to a local sink.

    bench/bigmsg.py [MEGABYTES]     (default 50; starts its own daemon)
"""
import shutil, socket, sys, threading, time

from benchlib import start_etrnd

mb = int(sys.argv[1]) if len(sys.argv) > 1 else 50
size = mb * 1024 * 1024

sink = socket.socket()
sink.bind(("127.0.0.1", 0))
sink.listen(8)
sinkport = sink.getsockname()[1]
got = {"octets": 0, "done": False}


def serve():
    c, _ = sink.accept()
    c.sendall(b"220 sink.example ESMTP\r\n")
    f = c.makefile("rb")
    in_data = False
    for line in f:
        if in_data:
            if line == b".\r\n":
                in_data = False
                got["done"] = True
                c.sendall(b"250 2.0.0 taken\r\n")
            else:
                got["octets"] += len(line)
            continue
        cmd = line[:4].upper()
        if cmd == b"DATA":
            in_data = True
            c.sendall(b"354 go on\r\n")
        elif cmd == b"EHLO":
            c.sendall(b"250-sink.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif cmd == b"QUIT":
            c.sendall(b"221 bye\r\n")
            return
        else:
            c.sendall(b"250 ok\r\n")


threading.Thread(target=serve, daemon=True).start()
sched = '*/* interval=1m retries="1" expiry=1d\nsmtp/* command=smtp\nlocal/* command=local\n'
p, port, d = start_etrnd("bigmsg", "HOSTNAME=bench.example\nMAX_MESSAGE_SIZE=%d\n" % (size * 2),
                         ".sink.example smtp![127.0.0.1]:%d\n" % sinkport,
                         {"scheduler.conf": sched})


def status(field):
    for line in open("/proc/%d/status" % p.pid):
        if line.startswith(field):
            return int(line.split()[1])


def reply(f):
    while True:
        line = f.readline()
        if line[3:4] != b"-":
            return line


try:
    time.sleep(0.3)
    before = status("VmHWM")
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")
    reply(f)
    for cmd in (b"EHLO bench.example", b"MAIL FROM:<s@bench.example>",
                b"RCPT TO:<u@sink.example>", b"DATA"):
        s.sendall(cmd + b"\r\n")
        reply(f)
    s.sendall(b"Subject: big\r\n\r\n")
    line = b"x" * 78 + b"\r\n"
    block = line * 1000
    sent = 0
    while sent < size:
        s.sendall(block)
        sent += len(block)
    s.sendall(b".\r\n")
    assert reply(f).startswith(b"250"), "queued"
    s.sendall(b"QUIT\r\n")
    s.close()
    t0 = time.time()
    while not got["done"] and time.time() < t0 + 120:
        time.sleep(0.05)
    assert got["done"], "delivered"
    time.sleep(0.3)
    after = status("VmHWM")
    print("relay of a %d MB message: peak RSS %d KiB before, %d KiB after: +%d KiB "
          "(%d octets delivered in %.1f s)" % (mb, before, after, after - before,
                                               got["octets"], time.time() - t0))
finally:
    p.terminate()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)
