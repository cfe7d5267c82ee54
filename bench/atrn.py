#!/usr/bin/env python3
"""ATRN (RFC 2645) drain: N held 1 KiB messages for one ODMR customer domain
(`client.dom odmr!`, the shipped hub scheduler.conf's `odmr/*` clause), released by
one ATRN and delivered down the customer's own turned-around connection.

    python3 bench/atrn.py [--messages 5000] [--runs 3]

  1. a scripted customer (this process) that authenticates with CRAM-MD5, sends ATRN
     and then answers as an SMTP sink that keeps nothing: the time from sending ATRN
     to the end of the first message, and the drain rate of one connection — the
     figure to set beside `bench/etrn.sh` (ETRN into Postfix's smtp-sink);
  2. the same held mail released by ETRN instead, into the same Python sink on a
     listening socket: the figure that differs only by the turn-around;
  3. etrnd to etrnd: a customer daemon that commits every message durably, started
     with `etrnd atrn`: the time until the hub's queue is empty and the customer
     holds every message.

Medians of --runs. Prints a Markdown table.
"""
import argparse, base64, hmac, os, re, shutil, socket, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BIN, TOP, start_etrnd  # noqa: E402

SECRETS = "cust {PLAIN}s3cret client.dom\n"


def ports(d):
    text = open(f"{d}/log/etrnd").read()
    return [int(p) for p in re.findall(r"listening address=127\.0\.0\.1:(\d+)", text)]


def queued(d):
    q = f"{d}/spool/queue"
    return len(os.listdir(q)) if os.path.isdir(q) else 0


def hub(n, routes="client.dom odmr!\n"):
    sched = open(f"{TOP}/etc/hub/scheduler.conf").read()
    p, port, d = start_etrnd(
        "atrn-hub",
        'LISTEN="127.0.0.1:0 127.0.0.1:0/odmr"\nHOSTNAME=hub.example\nMYNETWORKS=127.0.0.0/8\n',
        routes,
        {"scheduler.conf": sched, "db/secrets": SECRETS},
        private=("db/secrets",),
    )
    while len(ports(d)) < 2:
        time.sleep(0.05)
    smtp, odmr = ports(d)[:2]
    subprocess.run(["smtp-source", "-s", "10", "-m", str(n), "-l", "1024", "-f",
                    "sender@far.example", "-t", "user@client.dom", f"127.0.0.1:{smtp}"],
                   check=True)
    while queued(d) < n:
        time.sleep(0.05)
    return p, odmr, d


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def reply(self):
        while True:
            l = self.line()
            if len(l) < 4 or l[3:4] != b"-":
                return int(l[:3]), l

    def send(self, text):
        self.s.sendall(text.encode() + b"\r\n")

    def until_dot(self):
        while True:
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                self.buf = self.buf[i + 5:]
                return
            # keep the tail: the end marker may straddle two reads
            keep = self.buf[-4:]
            chunk = self.s.recv(262144)
            if not chunk:
                raise EOFError
            self.buf = keep + chunk


def sink(c, t0):
    """Answers as an SMTP server that keeps nothing: (messages, first at)."""
    c.send("220 customer.example ready")
    first = None
    got = 0
    while True:
        l = c.line()
        v = l[:4].upper()
        if v == b"EHLO":
            c.s.sendall(b"250-customer.example\r\n250 PIPELINING\r\n")
        elif v == b"MAIL" or v == b"RCPT" or v == b"RSET":
            c.s.sendall(b"250 ok\r\n")
        elif v == b"DATA":
            c.s.sendall(b"354 go\r\n")
            c.until_dot()
            got += 1
            if first is None:
                first = time.monotonic() - t0
            c.s.sendall(b"250 ok\r\n")
        elif v == b"QUIT":
            c.s.sendall(b"221 bye\r\n")
            return got, first


def etrn_into_sink(n):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    sport = lst.getsockname()[1]
    p, _, d = hub(n, f".client.dom smtp-etrn![127.0.0.1]:{sport}\n")
    smtp = ports(d)[0]
    try:
        t0 = time.monotonic()
        subprocess.run([BIN, "-f", f"{d}/etrnd.conf", "etrn", "-p", str(smtp), "127.0.0.1",
                        "client.dom"], check=True, capture_output=True)
        s, _ = lst.accept()
        c = Conn.__new__(Conn)
        c.s, c.buf = s, b""
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got, first = sink(c, t0)
        total = time.monotonic() - t0
        assert got == n, (got, n)
        return first * 1000, n / total
    finally:
        lst.close()
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def scripted_customer(n):
    p, odmr, d = hub(n)
    try:
        c = Conn(odmr)
        c.reply()
        c.send("EHLO customer.example")
        c.reply()
        c.send("AUTH CRAM-MD5")
        code, l = c.reply()
        chal = base64.b64decode(l[4:])
        digest = hmac.new(b"s3cret", chal, "md5").hexdigest()
        c.send(base64.b64encode(f"cust {digest}".encode()).decode())
        assert c.reply()[0] == 235
        t0 = time.monotonic()
        c.send("ATRN client.dom")
        code, l = c.reply()
        assert code == 250, l
        got, first = sink(c, t0)
        total = time.monotonic() - t0
        assert got == n, (got, n)
        while queued(d) > 0:
            time.sleep(0.01)
        return first * 1000, n / total
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def etrnd_customer(n):
    p, odmr, d = hub(n)
    cp, _, cd = start_etrnd(
        "atrn-cust", "HOSTNAME=customer.example\n", "",
        {"db/localnames": "client.dom\n", "db/aliases": "user: root\n",
         "scheduler.conf": "*/* queueonly expiry=1d\nlocal/* command=local\n"
                           "error/* command=errormail\n",
         "db/authinfo": f"[127.0.0.1]:{odmr} cust s3cret\n"},
        private=("db/authinfo",),
    )
    try:
        t0 = time.monotonic()
        out = subprocess.run([BIN, "-f", f"{cd}/etrnd.conf", "atrn", "-p", str(odmr),
                              "127.0.0.1", "client.dom"], capture_output=True, text=True)
        total = time.monotonic() - t0
        assert out.returncode == 0 and f"{n} message(s)" in out.stdout, out.stdout + out.stderr
        assert queued(d) == 0 and queued(cd) == n
        return n / total
    finally:
        for x in (p, cp):
            x.terminate()
            x.wait()
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(cd, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=TOP, check=True)
    firsts, rates, efirsts, erates, e2e = [], [], [], [], []
    for _ in range(a.runs):
        f, r = scripted_customer(a.messages)
        firsts.append(f)
        rates.append(r)
        f, r = etrn_into_sink(a.messages)
        efirsts.append(f)
        erates.append(r)
        e2e.append(etrnd_customer(a.messages))
    print(f"ATRN, {a.messages} held 1 KiB messages, medians of {a.runs} runs\n")
    print("| figure | value |\n|---|---:|")
    print(f"| ATRN sent → end of the first message at the customer | {statistics.median(firsts):.1f} ms |")
    print(f"| drain down one turned-around connection (customer keeps nothing) | {statistics.median(rates):,.0f} msg/s |")
    print(f"| ETRN → end of the first message at the same sink | {statistics.median(efirsts):.1f} ms |")
    print(f"| drain after one ETRN into the same sink, one connection | {statistics.median(erates):,.0f} msg/s |")
    print(f"| etrnd to etrnd (`etrnd atrn`, the customer commits each message) | {statistics.median(e2e):,.0f} msg/s |")


if __name__ == "__main__":
    main()
