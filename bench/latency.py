#!/usr/bin/env python3
"""Latency under load (reference/bad-input.md goals G9 and G10): while smtp-source
sends N messages over S sessions and 100 slowloris sessions trickle one octet per
second, a probe session measures

  * dot-to-250: from sending the final dot to reading the 250 (durable commit), and
  * a fresh session: connect to 220 greeting, and its first NOOP round trip,

and prints p50, p99 and the maximum of each.

    bench/latency.py [N] [S]        (default 5000 messages, 10 sessions)

The spool is in $BENCH_DIR (default /var/tmp; `make bench` runs this under
bench/spoolfs.sh).
"""
import shutil, socket, subprocess, sys, threading, time

from benchlib import start_etrnd

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
sessions = int(sys.argv[2]) if len(sys.argv) > 2 else 10
daemon, port, d = start_etrnd(
    "latency", "HOSTNAME=bench.example\nMAX_CONNECTIONS=500\nMAX_CONNECTIONS_PER_IP=500\n",
    ".client.dom smtp-etrn!mail.client.dom\n")


class Session:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd(b"EHLO probe.example")

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, line):
        self.s.sendall(line + b"\r\n")
        return self.reply()


stop = threading.Event()


def slowloris():
    socks = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(s)
    line = b"HELO slow.example\r\n"
    i = 0
    while not stop.is_set():
        for s in socks:
            try:
                s.send(line[i % len(line):i % len(line) + 1])
            except OSError:
                pass
        i += 1
        stop.wait(1.0)
    for s in socks:
        s.close()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


dots, noops, greets = [], [], []


def probe():
    a = Session()
    k = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        b = Session()
        greets.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert b.cmd(b"NOOP") == 250
        noops.append(time.perf_counter() - t0)
        b.cmd(b"QUIT")
        b.s.close()
        assert a.cmd(b"MAIL FROM:<probe@bench.example>") == 250
        assert a.cmd(b"RCPT TO:<user@client.dom>") == 250
        assert a.cmd(b"DATA") == 354
        a.s.sendall(b"Subject: probe %d\r\n\r\n" % k + b"x" * 1000 + b"\r\n")
        t0 = time.perf_counter()
        assert a.cmd(b".") == 250
        dots.append(time.perf_counter() - t0)
        k += 1
        time.sleep(0.01)


try:
    threads = [threading.Thread(target=slowloris), threading.Thread(target=probe)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.time()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(n), "-l", "1024",
                    "-f", "sender@bench.example", "-t", "user@client.dom", f"127.0.0.1:{port}"], check=True)
    elapsed = time.time() - t0
    stop.set()
    for t in threads:
        t.join()
    ms = lambda x: f"{x * 1000:.1f} ms"
    print(f"load: {n} messages over {sessions} sessions in {elapsed:.1f} s ({n / elapsed:.0f} msg/s), "
          f"100 slowloris sessions open, spool in {d}")
    print(f"dot-to-250 ({len(dots)} probe messages): p50 {ms(pct(dots, 50))}, p99 {ms(pct(dots, 99))}, "
          f"max {ms(max(dots))}")
    print(f"fresh session, connect to greeting and EHLO ({len(greets)}): p50 {ms(pct(greets, 50))}, "
          f"p99 {ms(pct(greets, 99))}, max {ms(max(greets))}")
    print(f"fresh session, first NOOP round trip ({len(noops)}): p50 {ms(pct(noops, 50))}, "
          f"p99 {ms(pct(noops, 99))}, max {ms(max(noops))}")
finally:
    stop.set()
    daemon.terminate()
    daemon.wait()
    shutil.rmtree(d, ignore_errors=True)
