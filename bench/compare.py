#!/usr/bin/env python3
"""etrnd and Postfix side by side on this machine, in the same run.

    python3 bench/compare.py [--runs 3] [--messages 5000] [--drain 10000] [--out BENCHMARKS.md]

Installs Postfix (for smtp-source/smtp-sink and the comparison) from Debian's
packages if missing, sets up a private Postfix instance on loopback that does no DNS
(its own config and queue under /var/tmp), and measures, alternating etrnd and
Postfix, each figure's median of --runs runs:

  1. acceptance: smtp-source with 1, 10 and 50 sessions, N x 1 KiB into a held
     destination (etrnd: a queue-only route; Postfix: defer_transports), messages/s;
  2. flush drain: D held messages released by one ETRN (etrnd etrn / postqueue -s)
     into smtp-sink: seconds, messages/s, connections used;
  3. memory: RSS and PSS of all processes of each MTA idle, at the end of the
     10-session acceptance load, and with 1,000 idle SMTP connections;
  4. ceilings: smtp-source straight into smtp-sink, and the disk's durable
     small-file commit rate;
  5. the stripped release binary's size.

Both MTAs keep their queues in $BENCH_DIR (default /var/tmp); `make bench` runs this
under bench/spoolfs.sh, which sets it to a fresh loop-mounted ext4 when it can.

Writes a Markdown report (--out) with the machine facts and the exact commands.
"""
import argparse, os, platform, re, shutil, socket, statistics, subprocess, tempfile, time

from benchlib import BIN, TOP, start_etrnd
BASE = os.environ.get("BENCH_DIR") or "/var/tmp"  # where both MTAs keep their queues


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def ensure_tools():
    if not shutil.which("smtp-source") or not os.path.exists("/usr/sbin/postfix"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run("apt-get update -qq && apt-get install -y -qq postfix", shell=True, check=True, env=env)
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=TOP, check=True)


def proc_tree(root_pid):
    """The pid and all its descendants."""
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root_pid]
    while todo:
        p = todo.pop(); out.append(p); todo.extend(kids.get(p, []))
    return out


def memory(root_pid):
    rss = pss = 0
    for p in proc_tree(root_pid):
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"): rss += int(line.split()[1])
                if line.startswith("Pss:"): pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def smtp_source(port, n, sessions, rcpt):
    t0 = time.time()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(n), "-l", "1024",
                    "-f", "sender@far.example", "-t", rcpt, f"127.0.0.1:{port}"], check=True)
    return time.time() - t0


def time_wait(port):
    """Closed connections to or from `port` still in TIME-WAIT (either side)."""
    out = subprocess.run(["ss", "-tan", "state", "time-wait"], capture_output=True, text=True).stdout
    n = 0
    for line in out.splitlines()[1:]:
        cols = line.split()
        if any(c.endswith(f":{port}") for c in cols[-2:]):
            n += 1
    return n


class Etrnd:
    name = "etrnd"

    def __init__(self, sinkport):
        self.sinkport = sinkport

    def start(self):
        self.proc, self.port, self.dir = start_etrnd(
            "cmp", "HOSTNAME=etrnd.bench\nHOSTS_FILE=hosts\n"
            f"SMTP_PORT={self.sinkport}\nMAX_CONNECTIONS=1100\nMAX_CONNECTIONS_PER_IP=1100\n",
            ".client.dom smtp-etrn!mail.client.dom\n",
            {"hosts": "127.0.0.1 mail.client.dom\n",
             "scheduler.conf": open(f"{TOP}/etc/hub/scheduler.conf").read()}, BASE)

    def pid(self):
        return self.proc.pid

    def queued(self):
        # Held mail is parked in hold/ (DESIGN.md §5.10).
        return sum(len(os.listdir(f"{self.dir}/spool/{q}")) for q in ("queue", "hold")
                   if os.path.isdir(f"{self.dir}/spool/{q}"))

    def held(self):
        return self.queued()

    def flush(self):
        subprocess.run([BIN, "-f", f"{self.dir}/etrnd.conf", "etrn", "-p", str(self.port), "127.0.0.1", "client.dom"],
                       check=True, capture_output=True)

    def stop(self):
        self.proc.terminate(); self.proc.wait(); shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


class Postfix:
    name = "Postfix"

    def __init__(self, sinkport):
        self.sinkport = sinkport

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="pf-cmp.", dir=BASE)
        d = self.dir
        os.chmod(d, 0o755)  # Postfix's own processes run as user postfix
        for sub in ("etc", "spool", "data"):
            os.makedirs(f"{d}/{sub}")
        # A configuration of its own from nothing: the package's pristine master.cf
        # and an empty main.cf (the system's is neither read nor changed).
        master = next(p for p in ("/usr/share/postfix/master.cf.dist", "/etc/postfix/master.cf")
                      if os.path.exists(p))
        shutil.copy(master, f"{d}/etc/master.cf")
        open(f"{d}/etc/main.cf", "w").close()
        shutil.chown(f"{d}/data", "postfix")
        self.port = free_port()
        open(f"{d}/etc/transport", "w").write(f"client.dom smtp:[127.0.0.1]:{self.sinkport}\n")
        settings = [
            f"queue_directory = {d}/spool", f"data_directory = {d}/data", "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4", "myhostname = postfix.bench", "mydestination =", "mynetworks = 127.0.0.0/8",
            "relay_domains = client.dom", f"transport_maps = texthash:{d}/etc/transport",
            "smtp_dns_support_level = disabled", "defer_transports = smtp", "fast_flush_domains = client.dom",
            "smtpd_etrn_restrictions = permit", "alias_maps =", "alias_database =", f"maillog_file = {d}/maillog",
            "compatibility_level = 3.6", "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "multi_instance_name = cmp", "default_process_limit = 1100",
        ]
        sh("postconf -c " + f"{d}/etc -e " + " ".join(f"'{s}'" for s in settings))
        sh(f"postconf -c {d}/etc -M -e 'smtp/inet = 127.0.0.1:{self.port} inet n - n - - smtpd'")
        sh(f"postconf -c {d}/etc -M -e 'postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd'")
        sh(f"postfix -c {d}/etc start")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close(); break
            except OSError:
                time.sleep(0.1)

    def pid(self):
        return int(open(f"{self.dir}/spool/pid/master.pid").read().split()[0])

    def queued(self):
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(f"{self.dir}/spool/{sub}"):
                n += len(files)
        return n

    def held(self):
        # Fast flush releases what is deferred when it runs: wait until all of it is.
        return sum(len(f) for _, _, f in os.walk(f"{self.dir}/spool/deferred"))

    def flush(self):
        sh(f"postqueue -c {self.dir}/etc -s client.dom")

    def stop(self):
        subprocess.run(f"postfix -c {self.dir}/etc stop", shell=True, capture_output=True)
        time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def wait_queued(mta, n, limit=300):
    t0 = time.time()
    while mta.queued() < n and time.time() - t0 < limit:
        time.sleep(0.05)


def wait_held(mta, n, limit=300):
    t0 = time.time()
    while mta.held() < n and time.time() - t0 < limit:
        time.sleep(0.05)


def wait_empty(mta, limit=600):
    t0 = time.time()
    while mta.queued() > 0:
        if time.time() - t0 > limit:
            raise RuntimeError(f"{mta.name}: queue did not drain in {limit} s")
        time.sleep(0.02)


def idle_connections(port, n=1000):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5); socks.append(s)
        except OSError:
            break
    time.sleep(2)
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--drain", type=int, default=10000)
    ap.add_argument("--out", default=os.path.join(TOP, "BENCHMARKS.md"))
    a = ap.parse_args()
    ensure_tools()
    run_all(a, describe_fs(BASE))


def describe_fs(path):
    """The device, type and journal of the file system holding `path`."""
    best = ("", "?", "?")
    for line in open("/proc/mounts"):
        dev, mnt, typ = line.split()[:3]
        if (path + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[1]):
            best = (dev, mnt, typ)
    dev, mnt, typ = best
    text = f"{path} on {dev} ({typ})"
    if typ.startswith("ext"):
        feats = subprocess.run(["tune2fs", "-l", dev], capture_output=True, text=True).stdout
        journal = "has_journal" in feats
        text += ", journal " + ("on" if journal else "off")
    if dev.startswith("/dev/loop"):
        text += ", a fresh file system loop-mounted by bench/spoolfs.sh"
    return text


def run_all(a, fs_what):
    sinkport = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "root", f"127.0.0.1:{sinkport}", "1000"])
    res = {}  # (figure, mta) -> list

    def add(fig, mta, v):
        res.setdefault((fig, mta), []).append(v)

    mtas = [Etrnd(sinkport), Postfix(sinkport)]
    try:
        measure(a, mtas, sinkport, add)
    finally:
        sink.terminate()
        for m in mtas:
            if getattr(m, "dir", None) and os.path.exists(m.dir):
                try:
                    m.stop()
                except Exception:
                    pass
    report(a, res, sinkport, fs_what)


def measure(a, mtas, sinkport, add):
    for run in range(a.runs):
        order = mtas if run % 2 == 0 else list(reversed(mtas))
        for m in order:
            for s in (1, 10, 50):
                m.start()
                if s == 1 and run == 0:
                    add("RSS idle (KiB)", m.name, memory(m.pid())[0])
                    add("PSS idle (KiB)", m.name, memory(m.pid())[1])
                dt = smtp_source(m.port, a.messages, s, "user@client.dom")
                wait_queued(m, a.messages)
                add(f"acceptance, {s} session(s) (msg/s)", m.name, a.messages / dt)
                if s == 10:
                    rss, pss = memory(m.pid())
                    add("RSS after load (KiB)", m.name, rss); add("PSS after load (KiB)", m.name, pss)
                m.stop()
            # flush drain
            m.start()
            smtp_source(m.port, a.drain, 10, "user@client.dom")
            wait_held(m, a.drain)
            before = time_wait(sinkport)
            t0 = time.time(); m.flush(); wait_empty(m); dt = time.time() - t0
            add(f"flush drain of {a.drain} (s)", m.name, dt)
            add(f"flush drain of {a.drain} (msg/s)", m.name, a.drain / dt)
            add("flush drain connections", m.name, max(time_wait(sinkport) - before, 0))
            if run == 0:
                socks = idle_connections(m.port)
                rss, pss = memory(m.pid())
                add(f"RSS with {len(socks)} idle connections (KiB)", m.name, rss)
                add(f"PSS with {len(socks)} idle connections (KiB)", m.name, pss)
                for s_ in socks: s_.close()
            m.stop()


def report(a, res, sinkport, fs_what):
    sink = subprocess.Popen(["smtp-sink", "-u", "root", f"127.0.0.1:{sinkport}", "1000"])
    time.sleep(0.3)
    t = smtp_source(sinkport, a.messages, 10, "user@client.dom")
    ceiling_direct = a.messages / t
    fs = sh(f"python3 {TOP}/bench/fsync_ceiling.py 2000 {BASE}")
    ceiling_fsync = float(re.search(r": (\d+) commits/s", fs).group(1))
    sink.terminate()
    size = os.path.getsize(BIN)
    figures = []
    seen = []
    for (fig, _m) in res:
        if fig not in seen: seen.append(fig)
    for fig in seen:
        e = res.get((fig, "etrnd")); p = res.get((fig, "Postfix"))
        me = statistics.median(e) if e else None
        mp = statistics.median(p) if p else None
        figures.append((fig, me, mp))
    facts = {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "disk": fs_what,
        "postfix": sh("postconf -h mail_version").strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    lines = ["# Benchmarks: etrnd and Postfix side by side", "",
             f"One run of `sh bench/spoolfs.sh python3 bench/compare.py --runs {a.runs} --messages {a.messages} "
             f"--drain {a.drain}` (`make bench` runs it) on {facts['date']}: {facts['cores']} cores, kernel {facts['kernel']}, "
             f"spool disk {facts['disk']}, Postfix {facts['postfix']}. Each figure is the median of "
             f"{a.runs} runs, etrnd and Postfix alternating; durability on for both (every 250 after fsync).", "",
             "| figure | etrnd | Postfix | etrnd / Postfix |", "|---|---:|---:|---:|"]
    for fig, me, mp in figures:
        ratio = f"{me / mp:.2f}" if me and mp else "n/a"
        fmt = lambda v: "n/a" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")
        lines.append(f"| {fig} | {fmt(me)} | {fmt(mp)} | {ratio} |")
    lines += ["", "Ceilings on this machine:", "",
              f"* smtp-source straight into smtp-sink, 10 sessions: {ceiling_direct:.0f} msg/s (no queue at all)",
              f"* durable small-file commit (create, write 4 KiB, fsync, rename, fsync dir): {ceiling_fsync:.0f} commits/s "
              "(`python3 bench/fsync_ceiling.py 2000 $BENCH_DIR`)",
              f"* etrnd release binary, stripped: {size} bytes", "",
              "How each MTA is set up: etrnd holds `client.dom` in the queue-only `smtp-etrn` channel (the shipped hub "
              "scheduler.conf) and delivers to smtp-sink through a hosts-file entry; Postfix is a private instance "
              "(own config, queue and master on the spool file system, `inet_interfaces = 127.0.0.1`, "
              "`smtp_dns_support_level = disabled`) that holds mail with `defer_transports = smtp`, relays "
              "`client.dom` through `transport_maps` to the same smtp-sink, and flushes with `postqueue -s` "
              "(fast flush). Memory is the sum over every process of the MTA (Postfix: master and all its "
              "children) from /proc/PID/smaps_rollup. Connections are counted as client-side TIME-WAIT sockets "
              "towards the sink after the drain.", "",
              ""]
    open(a.out, "w").write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
