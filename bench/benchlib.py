"""Shared helpers for bench/tls and bench/socks5 (Python 3 stdlib only).

The same conventions as the shared harness (../shared/bench/run): every peer is a shell command
template run as `bash -c 'exec CMD'` in its own session/process group; readiness is a LISTEN
socket on its port in /proc/net/tcp (no probe connection); CPU and RSS are summed over its
process tree; it is stopped by signalling the process group we created, by id, and nothing else.
"""
import datetime
import json
import os
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StartFailure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# /proc helpers

def proc_tree(root):
    """PIDs of root and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    """utime+stime (+ reaped children's cutime+cstime) summed over the pids, in seconds."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            r = s[s.rfind(")") + 2:].split()
            t += int(r[11]) + int(r[12]) + int(r[13]) + int(r[14])
        except (OSError, ValueError, IndexError):
            pass
    return t / CLK


def rss_bytes(pids):
    """Sum of VmRSS over the pids, in bytes."""
    rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return rss


def listening(port):
    """Is something LISTENing on TCP port `port` (v4 or v6)? From /proc, no probe connection."""
    hexport = f"{port:04X}"
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].rsplit(":", 1)[1] == hexport and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def cpu_busy(interval=1.0):
    """Machine-wide CPU use over `interval`, in % of one core (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 100.0 * ((t1 - t0) - (i1 - i0)) / CLK / interval


def busiest(interval=1.0, n=3):
    """(machine-wide CPU use over `interval` in % of one core, the `n` busiest processes then as
    "comm pid pct%" strings) -- to name what else was running when a figure was taken."""
    def snap():
        t = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        s = f.read()
                    r = s[s.rfind(")") + 2:].split()
                    t[int(d)] = (s[s.find("(") + 1:s.rfind(")")], int(r[11]) + int(r[12]))
                except (OSError, ValueError, IndexError):
                    pass
        return t
    a = snap()
    pct = cpu_busy(interval)
    b = snap()
    use = sorted(((b[p][1] - a[p][1], b[p][0], p) for p in b if p in a), reverse=True)[:n]
    return pct, [f"{c} {p} {100.0 * d / CLK / interval:.0f}%" for d, c, p in use if d > 0]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def raise_nofile():
    """Raise RLIMIT_NOFILE as far as allowed (children inherit it); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            want = min(int(f.read()), 1 << 20)
    except OSError:
        want = hard
    for lim in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def kill_group(proc, grace=3.0):
    """Terminate a process we started (it leads its own process group) and that group, by id."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stray children (forked workers)
    except OSError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def wait_listening(port, proc, limit=10.0):
    """Wait until `port` is LISTENing (True) or `proc` exits / `limit` seconds pass (False)."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if proc is not None and proc.poll() is not None:
            return False
        if listening(port):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------------------------
# a peer: a command template started in its own process group

class Proc:
    """A server or proxy we start from a template. `fmt` fills the template's placeholders
    (lport and confdir are added here); `confs` maps file names in confdir to templates."""

    def __init__(self, name, template, workdir, fmt=None, confs=None, ready_secs=10.0, settle=0.3):
        self.name, self.template = name, template
        self.lport = free_port()
        self.confdir = os.path.join(workdir, f"{name}-{self.lport}")
        os.makedirs(self.confdir, exist_ok=True)
        self.fmt = dict(fmt or {}, lport=self.lport, confdir=self.confdir)
        for fn, tmpl in (confs or {}).items():
            with open(os.path.join(self.confdir, fn), "w") as f:
                f.write(tmpl.format(**self.fmt))
        self.cmd = template.format(**self.fmt)
        self.outpath = os.path.join(self.confdir, "output.txt")
        self.outf = open(self.outpath, "w")
        self.proc = subprocess.Popen(["bash", "-c", "exec " + self.cmd], cwd=self.confdir,
                                     stdout=self.outf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if wait_listening(self.lport, self.proc, ready_secs):
            time.sleep(settle)  # let it finish initialising (threads, workers)
            if self.proc.poll() is None:
                return
        out = self.output_tail()
        self.stop()
        raise StartFailure(f"{name} did not start (command: {self.cmd}; exit status "
                           f"{self.proc.returncode}; not listening on 127.0.0.1:{self.lport} within "
                           f"{ready_secs:.0f} s); output: {out.strip()[-500:]!r}")

    def output_tail(self, n=2000):
        try:
            with open(self.outpath, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def pids(self):
        return proc_tree(self.proc.pid)

    def cpu(self):
        return cpu_seconds(self.pids())

    def rss(self):
        return rss_bytes(self.pids())

    def quiesce(self, quiet=0.3, limit=10.0):
        """Wait (bounded) until the process tree stops using CPU, e.g. after a transfer."""
        t0, last = time.time(), None
        while time.time() - t0 < limit:
            cur = round(self.cpu(), 2)
            if cur == last:
                return
            last = cur
            time.sleep(quiet)

    def stop(self):
        kill_group(self.proc)
        self.outf.close()


# --------------------------------------------------------------------------------------------
# results: per (figure, peer) lists of values over the repetitions; medians in the table

class Results:
    def __init__(self):
        self.labels, self.order, self.vals = {}, [], {}
        self.notes, self.corrupt, self.skipped = [], [], {}

    def add(self, key, label, peer, value):
        if key not in self.labels:
            self.labels[key] = label
            self.order.append(key)
        self.vals.setdefault((key, peer), []).append(value)

    def fail(self, key, label, peer, tag, msg, corrupt=False):
        """Record a failed run: `tag` (FAIL/CORRUPT) in the cell, `msg` under the table."""
        self.add(key, label, peer, tag)
        self.notes.append(msg)
        log("  !! " + msg)
        if corrupt:
            self.corrupt.append(msg)

    def cell(self, key, peer):
        v = self.vals.get((key, peer))
        if not v:
            return None
        bad = [x for x in v if isinstance(x, str)]
        if bad:  # a failure dominates: it is the interesting fact
            return bad[0] + (f" ({len(bad)}/{len(v)} runs)" if len(v) > 1 else "")
        return statistics.median(v)

    def table(self, peers):
        lines = ["| figure | " + " | ".join(peers) + " |", "|---|" + "---|" * len(peers)]
        for key in self.order:
            lines.append(f"| {self.labels[key]} | "
                         + " | ".join(fmt_num(self.cell(key, p)) for p in peers) + " |")
        return "\n".join(lines)


def fmt_num(x):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_size(n):
    for unit, v in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= v and n % v == 0:
            return f"{n // v} {unit}"
    return f"{n} B"


def git_commit():
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def report(title, R, peers, commands, started, elapsed, reps, extra_lines, json_path, out_path=None):
    """Print the markdown report (and write it / the raw JSON if asked); returns the exit status:
    2 if any transfer was corrupted, 1 if a requested peer could not be measured, else 0."""
    lines = [f"## {title} ({started:%Y-%m-%d %H:%M}, {elapsed:.0f} s, median of {reps} runs, "
             f"commit {git_commit()})", "",
             f"Command: `{' '.join(shlex.quote(x) for x in sys.argv)}`", "",
             f"Host: {os.cpu_count()} CPUs, kernel {os.uname().release}; MB = 10^6 bytes.", ""]
    lines += extra_lines
    lines += ["", "Peers:", ""]
    for p in peers:
        lines.append(f"- {p}: `{commands.get(p, '?')}`")
    for p, why in R.skipped.items():
        lines.append(f"- {p}: NOT MEASURED: {why}")
    lines += ["", R.table(peers), ""]
    if R.notes:
        lines += ["Failures and warnings:", ""] + [f"- {m}" for m in dict.fromkeys(R.notes)] + [""]
    text = "\n".join(lines)
    print(text)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text + "\n")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"started": started.isoformat(), "peers": peers, "commands": commands,
                       "labels": R.labels, "skipped": R.skipped,
                       "values": {f"{k}|{p}": v for (k, p), v in R.vals.items()},
                       "notes": R.notes}, f, indent=1)
    if R.corrupt:
        print("ERROR: data arrived corrupted or incomplete: " + "; ".join(R.corrupt), file=sys.stderr)
        return 2
    if R.skipped:
        print("WARNING: not measured: " + ", ".join(R.skipped), file=sys.stderr)
        return 1
    return 0


def install_signal_handlers():
    """SIGTERM/SIGINT unwind the `finally` blocks, so every process we started is stopped."""
    def _terminate(signum, frame):
        raise SystemExit(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)


def now():
    return datetime.datetime.now()
