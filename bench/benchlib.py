"""Shared by the Python benchmarks: an etrnd from target/release in a fresh directory."""
import os, re, subprocess, tempfile, time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ETRND_BIN names another build (before/after comparisons); the default is this tree's.
BIN = os.environ.get("ETRND_BIN") or os.path.join(TOP, "target/release/etrnd")


def start_etrnd(tag, conf, routes, files=None, base=None, private=()):
    """Writes etrnd.conf (loopback, port 0, spool and logs inside the directory, plus
    `conf`), db/routes and `files` (name -> text; those named in `private` mode 0600)
    into a fresh directory under `base` ($BENCH_DIR or /var/tmp), starts the daemon and
    returns (process, port, directory)."""
    d = tempfile.mkdtemp(prefix=f"etrnd-{tag}.", dir=base or os.environ.get("BENCH_DIR") or "/var/tmp")
    os.chmod(d, 0o755)
    if os.geteuid() == 0 and "USER=" not in conf:
        # etrnd refuses to serve as root: give it an account of its own.
        if subprocess.run(["id", "etrnd-bench"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-r", "-M", "-d", "/nonexistent", "-s", "/bin/false",
                            "etrnd-bench"], check=True)
        conf += "\nUSER=etrnd-bench\n"
    os.makedirs(f"{d}/db")
    os.makedirs(f"{d}/log")
    open(f"{d}/etrnd.conf", "w").write(
        "MAILVAR=.\nPOSTOFFICE=spool\nPIDFILE=etrnd.pid\nLOGDIR=log\n"
        + ("" if "LISTEN=" in conf else "LISTEN=127.0.0.1:0\n")
        + "HOSTS_ORDER=files\n" + conf)
    open(f"{d}/db/routes", "w").write(routes)
    for name, text in (files or {}).items():
        open(f"{d}/{name}", "w").write(text)
        if name in private:
            os.chmod(f"{d}/{name}", 0o600)
    log = open(f"{d}/log/etrnd", "w+")
    p = subprocess.Popen([BIN, "-d", "-f", f"{d}/etrnd.conf"], stderr=log)
    for _ in range(200):
        log.seek(0)
        m = re.search(r"listening address=127\.0\.0\.1:(\d+)", log.read())
        if m:
            return p, int(m.group(1)), d
        time.sleep(0.05)
    p.terminate()
    raise RuntimeError(f"etrnd did not start; see {d}/log/etrnd")
