#!/usr/bin/env python3
"""TLS side by side: etrnd and a private Postfix (smtpd_tls on), same machine, same
run, same certificate, alternating, medians of --runs.

    python3 bench/tls.py [--runs 3] [--messages 600] [--workers 4] [--idle 100]

  1. acceptance over STARTTLS with one handshake per message: --workers client
     processes, each connecting, EHLO, STARTTLS, EHLO, one 1 KiB message, QUIT;
  2. acceptance over STARTTLS with many messages per session: each worker one
     session, one handshake, then its share of the messages;
  3. memory: RSS of all the MTA's processes idle, and with --idle TLS sessions open
     (handshake done, EHLO answered, idle), and the RSS per idle TLS session;
  4. the stripped release binary's size with and without the tls feature.

Messages go into a held destination (etrnd: queue-only route; Postfix:
defer_transports), so only acceptance is timed. Prints a Markdown table.
"""
import argparse, multiprocessing, os, smtplib, ssl, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from benchlib import BIN, TOP, start_etrnd  # noqa: E402

BODY = "Subject: tls bench\r\n\r\n" + ("x" * 70 + "\r\n") * 14


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def per_message(args):
    port, n = args
    c = ctx()
    for _ in range(n):
        s = smtplib.SMTP("127.0.0.1", port, timeout=60)
        s.ehlo("bench.example"); s.starttls(context=c); s.ehlo("bench.example")
        s.sendmail("sender@far.example", ["user@client.dom"], BODY)
        s.quit()


def per_session(args):
    port, n = args
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("bench.example"); s.starttls(context=ctx()); s.ehlo("bench.example")
    for _ in range(n):
        s.sendmail("sender@far.example", ["user@client.dom"], BODY)
    s.quit()


def load(fn, port, total, workers):
    share = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    t0 = time.time()
    with multiprocessing.Pool(workers) as p:
        p.map(fn, [(port, k) for k in share])
    return total / (time.time() - t0)


def open_idle(port, n):
    socks = []
    c = ctx()
    for _ in range(n):
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
        s.ehlo("idle.example"); s.starttls(context=c); s.ehlo("idle.example")
        socks.append(s)
    time.sleep(2)
    return socks


class TlsEtrnd(compare.Etrnd):
    def __init__(self, sinkport, certdir):
        super().__init__(sinkport)
        self.certdir = certdir

    def start(self):
        self.proc, self.port, self.dir = start_etrnd(
            "tls", f"HOSTNAME=etrnd.bench\nHOSTS_FILE=hosts\nSMTP_PORT={self.sinkport}\n"
            "MAX_CONNECTIONS=1100\nMAX_CONNECTIONS_PER_IP=1100\nGREET_PAUSE=0\n"
            f"TLS_CERT={self.certdir}/cert.pem\nTLS_KEY={self.certdir}/key.pem\n",
            ".client.dom smtp-etrn!mail.client.dom\n",
            {"hosts": "127.0.0.1 mail.client.dom\n",
             "scheduler.conf": open(f"{TOP}/etc/hub/scheduler.conf").read()}, compare.BASE)


class TlsPostfix(compare.Postfix):
    def __init__(self, sinkport, certdir):
        super().__init__(sinkport)
        self.certdir = certdir

    def start(self):
        super().start()
        d = self.dir
        compare.sh(f"postconf -c {d}/etc -e 'smtpd_tls_cert_file = {self.certdir}/cert.pem' "
                   f"'smtpd_tls_key_file = {self.certdir}/key.pem' 'smtpd_tls_security_level = may' "
                   "'smtpd_tls_session_cache_database =' 'smtpd_tls_loglevel = 0'")
        compare.sh(f"postfix -c {d}/etc reload")
        time.sleep(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--idle", type=int, default=100)
    a = ap.parse_args()
    compare.ensure_tools()
    certdir = tempfile.mkdtemp(prefix="tls-bench.", dir="/var/tmp")
    os.chmod(certdir, 0o755)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{certdir}/key.pem", "-out", f"{certdir}/cert.pem", "-days", "2",
                    "-subj", "/CN=bench.example"], check=True, capture_output=True)
    os.chmod(f"{certdir}/key.pem", 0o644)
    sinkport = compare.free_port()
    mtas = [TlsEtrnd(sinkport, certdir), TlsPostfix(sinkport, certdir)]
    res = {}

    def add(fig, m, v):
        res.setdefault((fig, m.name), []).append(v)

    for run in range(a.runs):
        for m in (mtas if run % 2 == 0 else mtas[::-1]):
            m.start()
            try:
                if run == 0:
                    idle = compare.memory(m.pid())[0]
                    add("RSS idle (KiB)", m, idle)
                    socks = open_idle(m.port, a.idle)
                    rss = compare.memory(m.pid())[0]
                    add(f"RSS with {a.idle} idle TLS sessions (KiB)", m, rss)
                    add("RSS per idle TLS session (KiB)", m, (rss - idle) / a.idle)
                    for s in socks:
                        s.close()
                    time.sleep(1)
                add("STARTTLS, one handshake per message (msg/s)", m,
                    load(per_message, m.port, a.messages, a.workers))
                add("STARTTLS, one session per worker (msg/s)", m,
                    load(per_session, m.port, a.messages * 5, a.workers))
            finally:
                m.stop()
    sizes = {}
    for feat, target in (("tls", "target/release"), ("no-tls", "target/notls/release")):
        if feat == "no-tls":
            subprocess.run(["cargo", "build", "--release", "-q", "--no-default-features",
                            "--target-dir", "target/notls"], cwd=TOP, check=True)
        sizes[feat] = os.path.getsize(os.path.join(TOP, target, "etrnd"))
    print(f"TLS benchmarks: {a.runs} runs, median; {a.workers} client processes; "
          f"{a.messages} messages per handshake-per-message run, {a.messages * 5} per session run\n")
    print("| figure | etrnd | Postfix | etrnd / Postfix |")
    print("|---|---:|---:|---:|")
    figs = []
    for (f, _) in res:
        if f not in figs:
            figs.append(f)
    for f in figs:
        e = statistics.median(res[(f, "etrnd")]); p = statistics.median(res[(f, "Postfix")])
        print(f"| {f} | {e:,.1f} | {p:,.1f} | {e / p:.2f} |")
    print(f"\nrelease binary (stripped): with tls {sizes['tls']:,} octets "
          f"({sizes['tls'] / 1048576:.2f} MiB), without {sizes['no-tls']:,} octets "
          f"({sizes['no-tls'] / 1048576:.2f} MiB)")


if __name__ == "__main__":
    main()
