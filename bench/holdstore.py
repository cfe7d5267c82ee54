#!/usr/bin/env python3
"""The hold store at scale (DESIGN.md §5.10), etrnd and Postfix in one run.

    python3 bench/holdstore.py [--messages 1000000] [--dests 10000] [--postfix 100000]

etrnd: a spool of --messages held messages for --dests destinations is built with
the project's own spool writer (cargo run --release --example spool_writer), then
the daemon is started on it and measured:

  * time from exec to the first 220 read by a client, and the daemon's RSS then
    (the main process; and every etrnd process summed);
  * ETRN of one destination (messages/dests of them) -> the first connection the
    sink accepts, and the time until the sink has all of them;
  * `etrnd clients` and `etrnd qshape` run time with the daemon running;
  * acceptance (smtp-source, 10 sessions, 5,000 x 1 KiB to a held destination)
    into that spool and into an empty one.

Postfix: a private instance (bench/compare.py's) with --postfix messages deferred
(defer_transports) over the same number of destinations, sent through SMTP (Postfix
has no spool writer of its own), then the same figures: start to first 220, the RSS
of all its processes, `postqueue -s` of one destination to the first connection and
the drain, `qshape deferred`, acceptance into that queue and into an empty one.

The static build (make static): idle RSS, RSS after and peak during the
10-session acceptance load, and the binary's size.

Everything runs on a fresh loop-mounted ext4 of its own (12 GiB sparse, 3 million
inodes) when run as root; the report goes to stdout as Markdown rows.
"""
import argparse, os, re, shutil, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BIN, TOP  # noqa: E402
import compare  # noqa: E402

STATIC = os.path.join(TOP, "target/etrnd-static")
SCHED = ('*/* interval=1m retries="1" expiry=7d\nlocal/* command=local\n'
         'smtp-etrn/* queueonly command=smtp\nsmtp/* command=smtp\n')


class Sink:
    """A minimal SMTP sink that records when each connection was accepted and how
    many messages it took."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepts, self.messages, self.last = [], 0, None
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def reset(self):
        with self.lock:
            self.accepts, self.messages, self.last = [], 0, None

    def serve(self):
        while True:
            c, _ = self.sock.accept()
            # Replies go out at once (no Nagle wait behind a delayed ACK).
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepts.append(time.monotonic())
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 sink.bench ESMTP\r\n")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    c.sendall(b"250-sink.bench\r\n250 PIPELINING\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go\r\n")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    with self.lock:
                        self.messages += 1
                        self.last = time.monotonic()
                    c.sendall(b"250 ok\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            return

    def wait(self, n, limit=120):
        t0 = time.monotonic()
        while self.messages < n and time.monotonic() - t0 < limit:
            time.sleep(0.005)
        return self.last


def first_220(port, t0, limit=60):
    """Seconds from t0 until a client reads the banner."""
    while time.monotonic() - t0 < limit:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if s.recv(512).startswith(b"220"):
                t = time.monotonic() - t0
                s.sendall(b"QUIT\r\n")
                s.close()
                return t
            s.close()
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("no 220")


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def timed(cmd):
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    return time.monotonic() - t0, out.stdout


def etrnd_dir(base, tag, sinkport, dests):
    d = tempfile.mkdtemp(prefix=f"etrnd-{tag}.", dir=base)
    os.chmod(d, 0o755)
    if subprocess.run(["id", "etrnd-bench"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-r", "-M", "-d", "/nonexistent", "-s", "/bin/false", "etrnd-bench"], check=True)
    os.makedirs(f"{d}/db")
    os.makedirs(f"{d}/log")
    port = compare.free_port()
    open(f"{d}/etrnd.conf", "w").write(
        f"MAILVAR=.\nPOSTOFFICE=spool\nPIDFILE=etrnd.pid\nLOGDIR=log\nLISTEN=127.0.0.1:{port}\n"
        f"HOSTS_ORDER=files\nHOSTS_FILE=hosts\nSMTP_PORT={sinkport}\nHOSTNAME=etrnd.bench\n"
        "USER=etrnd-bench\nMAX_CONNECTIONS=200\nMAX_CONNECTIONS_PER_IP=200\n")
    # A route per destination: ETRN cK.example releases that destination only (a
    # shared route line would release every domain taking it, DESIGN.md §5.5).
    open(f"{d}/db/routes", "w").write("".join(f".c{k}.example smtp-etrn!\n" for k in range(dests)))
    open(f"{d}/scheduler.conf", "w").write(SCHED)
    open(f"{d}/hosts", "w").write("".join(f"127.0.0.1 c{k}.example\n" for k in range(dests)))
    return d, port


def start(binary, d):
    log = open(f"{d}/log/etrnd", "a")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "-d", "-f", f"{d}/etrnd.conf"], stderr=log)
    return p, t0


def stop(p):
    p.terminate()
    p.wait()


def idle_rss(binary, base, sinkport, dests, settle):
    """The RSS of a daemon started on an empty spool, `settle` seconds after its 220."""
    d, port = etrnd_dir(base, "idle", sinkport, dests)
    p, t0 = start(binary, d)
    first_220(port, t0)
    time.sleep(settle)
    r = rss(p.pid)
    stop(p)
    shutil.rmtree(d, ignore_errors=True)
    return r


def accept_rate(port, rcpt, n=5000, sessions=10):
    return n / compare.smtp_source(port, n, sessions, rcpt)


def etrnd_figures(a, base, sink, rows):
    d, port = etrnd_dir(base, "held", sink.port, a.dests)
    t, out = timed(["cargo", "run", "-q", "--release", "--example", "spool_writer", "--",
                    f"{d}/spool", str(a.messages), str(a.dests)])
    print(out.strip(), f"({t:.0f} s)", file=sys.stderr)
    subprocess.run(["chown", "-R", "etrnd-bench:", f"{d}/spool"], check=True)

    def cold():
        subprocess.run(["sync"])
        subprocess.run("echo 3 > /proc/sys/vm/drop_caches", shell=True)
    # Three starts: the first one reads every index file (the writer leaves no
    # summary); after a clean stop the next reads the summary file; after a kill -9
    # the index files again (this boot: trusted). Caches dropped before each.
    cold()
    p, t0 = start(BIN, d)
    up = first_220(port, t0)
    rows.append((f"start to first 220, {a.messages} held, {a.dests} index files read, cold (s)", f"{up:.3f}"))
    stop(p)
    cold()
    p, t0 = start(BIN, d)
    up = first_220(port, t0)
    rows.append((f"start to first 220 after a clean stop (one summary file), cold (s)", f"{up:.3f}"))
    p.kill()
    p.wait()
    cold()
    p, t0 = start(BIN, d)
    up = first_220(port, t0)
    rows.append((f"start to first 220 after kill -9 (index files), cold (s)", f"{up:.3f}"))
    time.sleep(1)
    main_rss = rss(p.pid)
    all_rss = compare.memory(p.pid)[0]
    rows.append(("daemon RSS holding them (KiB)", str(main_rss)))
    rows.append(("all etrnd processes, RSS (KiB)", str(all_rss)))
    # The same configuration (10,000 route lines and hosts entries) with no mail.
    rows.append(("daemon RSS, same configuration, empty spool (KiB)",
                 str(idle_rss(BIN, base, sink.port, a.dests, 1))))
    cold()
    per = a.messages // a.dests
    sink.reset()
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(512)
    s.sendall(b"EHLO bench\r\n")
    s.recv(512)
    s.sendall(b"ETRN c7.example\r\n")
    reply = s.recv(512)
    last = sink.wait(per)
    first = sink.accepts[0] - t0 if sink.accepts else float("nan")
    rows.append((f"ETRN of {per} messages: to first connection (ms)", f"{first * 1000:.1f}"))
    rows.append((f"ETRN of {per} messages: drain (s)", f"{(last or t0) - t0:.3f}"))
    print("ETRN reply:", reply.decode().strip(), file=sys.stderr)
    s.close()
    t, out = timed([BIN, "-f", f"{d}/etrnd.conf", "clients"])
    rows.append(("`etrnd clients` (s)", f"{t:.2f}"))
    rows.append(("`etrnd clients` lines", str(len(out.splitlines()))))
    t, _ = timed([BIN, "-f", f"{d}/etrnd.conf", "qshape"])
    rows.append(("`etrnd qshape` (s)", f"{t:.2f}"))
    full = accept_rate(port, "u@c3.example")
    rows.append(("acceptance into that spool, 10 sessions (msg/s)", f"{full:.0f}"))
    rows.append(("daemon RSS after that load (KiB)", str(rss(p.pid))))
    stop(p)
    shutil.rmtree(d, ignore_errors=True)
    d, port = etrnd_dir(base, "empty", sink.port, a.dests)
    p, t0 = start(BIN, d)
    first_220(port, t0)
    empty = accept_rate(port, "u@c3.example")
    rows.append(("acceptance into an empty spool, 10 sessions (msg/s)", f"{empty:.0f}"))
    rows.append(("full / empty", f"{full / empty:.2f}"))
    stop(p)
    shutil.rmtree(d, ignore_errors=True)


def static_figures(base, sink, rows):
    if not os.path.exists(STATIC):
        subprocess.run(["make", "-C", TOP, "static"], check=True, capture_output=True)
    d, port = etrnd_dir(base, "static", sink.port, 10)
    p, t0 = start(STATIC, d)
    first_220(port, t0)
    time.sleep(2)
    rows.append(("static build: idle RSS, daemon (KiB)", str(rss(p.pid))))
    rows.append(("static build: idle RSS, all etrnd processes (KiB)", str(compare.memory(p.pid)[0])))
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], rss(p.pid))
            except OSError:
                return
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    rate = accept_rate(port, "u@c3.example")
    done.set()
    rows.append(("static build: 10-session acceptance (msg/s)", f"{rate:.0f}"))
    rows.append(("static build: RSS after the load (KiB)", str(rss(p.pid))))
    rows.append(("static build: RSS peak sampled during the load (KiB)", str(peak[0])))
    rows.append(("static build: VmHWM (KiB)", str(hwm(p.pid))))
    st = open(f"/proc/{p.pid}/status").read()
    for k in ("RssAnon", "RssFile"):
        v = re.search(rf"{k}:\s+(\d+)", st)
        rows.append((f"static build: {k} after the load (KiB)", v.group(1) if v else "?"))
    rows.append(("static build: binary size (octets)", str(os.path.getsize(STATIC))))
    rows.append(("dynamic release binary size (octets)", str(os.path.getsize(BIN))))
    stop(p)
    shutil.rmtree(d, ignore_errors=True)
    # The dynamic build beside it, same spool kind.
    rows.append(("dynamic build: idle RSS, daemon (KiB)", str(idle_rss(BIN, base, sink.port, 10, 2))))


def postfix_fill(port, n, dests, sessions=10):
    import smtplib

    def worker(w):
        s = smtplib.SMTP("127.0.0.1", port)
        for i in range(w, n, sessions):
            k = i % dests
            s.sendmail("sender@bench.example", [f"u{i}@c{k}.example"],
                       f"Subject: held {i}\r\n\r\n" + "x" * 500 + "\r\n")
        s.quit()
    ts = [threading.Thread(target=worker, args=(w,)) for w in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


class HeldPostfix(compare.Postfix):
    """bench/compare.py's private Postfix, relaying *.example to the sink."""

    def start(self):
        super().start()
        d = self.dir
        open(f"{d}/etc/transport", "w").write(f".example smtp:[127.0.0.1]:{self.sinkport}\n")
        compare.sh(f"postconf -c {d}/etc -e 'relay_domains = example' 'fast_flush_domains = example'"
                   " 'smtpd_relay_restrictions = permit_mynetworks, reject'")
        compare.sh(f"postfix -c {d}/etc reload")
        time.sleep(1)


def postfix_figures(a, sink, rows):
    pf = HeldPostfix(sink.port)
    pf.start()
    try:
        t0 = time.monotonic()
        postfix_fill(pf.port, a.postfix, a.dests)
        compare.wait_held(pf, a.postfix, limit=3600)
        print(f"Postfix: {a.postfix} deferred in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        time.sleep(5)
        subprocess.run(f"postfix -c {pf.dir}/etc stop", shell=True, capture_output=True)
        time.sleep(2)
        subprocess.run(["sync"])
        subprocess.run("echo 3 > /proc/sys/vm/drop_caches", shell=True)
        t0 = time.monotonic()
        subprocess.Popen(f"postfix -c {pf.dir}/etc start", shell=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        up = first_220(pf.port, t0)
        time.sleep(1)
        rows.append((f"Postfix: start to first 220, {a.postfix} deferred (s)", f"{up:.3f}"))
        rows.append(("Postfix: RSS, all processes (KiB)", str(compare.memory(pf.pid())[0])))
        per = a.postfix // a.dests
        sink.reset()
        t0 = time.monotonic()
        subprocess.run(f"postqueue -c {pf.dir}/etc -s c7.example", shell=True, check=True)
        last = sink.wait(per, limit=600)
        first = sink.accepts[0] - t0 if sink.accepts else float("nan")
        rows.append((f"Postfix: postqueue -s of {per} messages: to first connection (ms)", f"{first * 1000:.1f}"))
        rows.append((f"Postfix: postqueue -s of {per} messages: drain (s)", f"{(last or t0) - t0:.3f}"))
        t, _ = timed(["qshape", "-c", f"{pf.dir}/etc", "deferred"])
        rows.append(("Postfix: `qshape deferred` (s)", f"{t:.2f}"))
        rows.append(("Postfix: RSS, all processes, after those (KiB)", str(compare.memory(pf.pid())[0])))
        full = accept_rate(pf.port, "u@c3.example")
        rows.append(("Postfix: acceptance into that queue, 10 sessions (msg/s)", f"{full:.0f}"))
    finally:
        pf.stop()
    pf = HeldPostfix(sink.port)
    pf.start()
    try:
        empty = accept_rate(pf.port, "u@c3.example")
        rows.append(("Postfix: acceptance into an empty queue, 10 sessions (msg/s)", f"{empty:.0f}"))
        rows.append(("Postfix: full / empty", f"{full / empty:.2f}"))
    finally:
        pf.stop()


def loopfs():
    img = tempfile.mktemp(prefix="etrnd-hold-fs.", dir="/var/tmp")
    mnt = tempfile.mkdtemp(prefix="etrnd-hold-mnt.", dir="/var/tmp")
    subprocess.run(["truncate", "-s", "12G", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "3000000", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    os.chmod(mnt, 0o755)
    return img, mnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--dests", type=int, default=10_000)
    ap.add_argument("--postfix", type=int, default=100_000)
    ap.add_argument("--skip", default="", help="comma list of: etrnd,postfix,static")
    a = ap.parse_args()
    compare.ensure_tools()
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "spool_writer"], cwd=TOP, check=True)
    img, mnt = loopfs()
    compare.BASE = mnt
    sink = Sink()
    rows = []
    try:
        skip = a.skip.split(",")
        if "etrnd" not in skip:
            etrnd_figures(a, mnt, sink, rows)
        if "postfix" not in skip:
            postfix_figures(a, sink, rows)
        if "static" not in skip:
            static_figures(mnt, sink, rows)
    finally:
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)
        os.remove(img)
        print("| figure | value |\n|---|---:|")
        for k, v in rows:
            print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
