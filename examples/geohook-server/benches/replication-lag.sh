#!/usr/bin/env bash
# Replication lag of geohook-server (leader -> follower over loopback) at a
# steady write rate, side by side with redis-server (master -> replica) driven
# the same way in the same run.
#
# A writer process sends SETs to the leader at the target rate (pipelined
# once per millisecond). A prober in another process, every 5 ms, writes a probe object with a sequence
# number to the leader and, as soon as the leader acknowledged it, polls the
# follower until the follower returns that sequence number: the time from the
# leader's acknowledgement to the follower's answer is one lag sample. The
# probe SET's own round trip to the leader is shown beside it (a leader that
# hands a write to its followers before the reply pays for it there), and
# the share of samples in which the first GET already found the write. A
# rate of 0 runs the prober alone.
# "Kept up" means the writer reached at least 95% of the target rate, p99
# stayed under 100 ms, and the follower reached the leader's offset within
# 1 s after the writer stopped.
#
# Each run also prints the CPU time and the context switches (all threads)
# of both servers of the pair during it, from /proc.
# A p99 of one run rests on its ten or so slowest samples and moves by a
# third between runs of the same build; ROUNDS runs every rate that many
# times, alternating which server goes first, and ends with the p50 and p99
# of all rounds' samples pooled, per rate and server.
#
# Usage: [ROUNDS=n] examples/geohook-server/benches/replication-lag.sh [rates] [seconds]
#   rates   comma-separated commands/s   (default 5000,20000,50000,100000)
#   seconds per rate and round           (default 5)
#   ROUNDS  runs of each rate per server (default 1)
set -euo pipefail

RATES="${1:-5000,20000,50000,100000}"
SECS="${2:-5}"
ROUNDS="${ROUNDS:-1}"
source "$(dirname "$0")/common.sh"
start_pairs

echo "# $(date -u +%FT%TZ) $(nproc) cores, ${SECS}s per rate, $ROUNDS round(s)"
# start_pairs recorded the leader, follower, master and replica in that order.
PIDLIST="${PIDS[*]}" python3 - "$LP" "$FP" "$RM" "$RR" "$RATES" "$SECS" "$ROUNDS" <<'PY'
import multiprocessing, os, socket, sys, threading, time

lp, fp, rm, rr = (int(x) for x in sys.argv[1:5])
rates = [int(x) for x in sys.argv[5].split(",")]
secs = float(sys.argv[6])
rounds = int(sys.argv[7])

def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 16)
            if not d:
                raise EOFError
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def reply(self):
        l = self.line()
        if l[:1] == b"$":
            n = int(l[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(1 << 16)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if l[:1] == b"*":
            return [self.reply() for _ in range(int(l[1:]))]
        return l
    def call(self, *args):
        self.s.sendall(enc(*args))
        return self.reply()

def leader_offset(c, redis):
    if redis:
        info = c.call("INFO", "replication").decode()
        return int([l for l in info.split("\r\n") if l.startswith("master_repl_offset:")][0].split(":")[1])
    v = c.call("SERVER")
    d = dict(zip(v[::2], v[1::2]))
    return int(d[b"repl_offset"])

def follower_offset(c, redis):
    if redis:
        info = c.call("INFO", "replication").decode()
        return int([l for l in info.split("\r\n") if l.startswith("slave_repl_offset:")][0].split(":")[1])
    v = c.call("SERVER")
    d = dict(zip(v[::2], v[1::2]))
    return int(d[b"repl_offset"])

PIDL = [int(x) for x in os.environ["PIDLIST"].split()]

def usage(pid):
    """(context switches of all threads, CPU seconds) of a process so far."""
    switches = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                switches += sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return switches, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def run(name, lport, fport, redis, rate):
    pids = PIDL[2:4] if redis else PIDL[0:2]
    before = [usage(p) for p in pids]
    out = run_once(name, lport, fport, redis, rate)
    after = [usage(p) for p in pids]
    (lc, lt), (fc, ft) = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before)]
    print("               leader CPU %.2f s, %d context switches; follower CPU %.2f s, %d context switches"
          % (lt, lc, ft, fc), flush=True)
    return out

def run_once(name, lport, fport, redis, rate):
    # The writer runs in a process of its own: as a thread beside the prober
    # it would share one interpreter lock with it, and the prober would wait
    # for the writer's turns (Python switches threads every 5 ms), which
    # shows up in the lag figures of both servers alike.
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    sent = ctx.Value("q", 0, lock=False)
    def writer():
        c = Conn(lport)
        cmds = []
        for i in range(1000):
            if redis:
                cmds.append(enc("SET", "truck%d" % i, "33.%d,-115.%d" % (i, i)))
            else:
                cmds.append(enc("SET", "fleet", "truck%d" % i, "POINT", "33.%d" % i, "-115.%d" % i))
        start = time.perf_counter()
        i = 0
        while not stop.is_set():
            due = int((time.perf_counter() - start) * rate)
            n = due - sent.value
            if n <= 0:
                time.sleep(0.0005)
                continue
            n = min(n, 5000)
            batch = b"".join(cmds[(i + k) % 1000] for k in range(n))
            i += n
            c.s.sendall(batch)
            for _ in range(n):
                c.line()
            sent.value += n
    samples = []
    acks = []
    # GETs each sample took: 1 when the follower had the write at the first.
    polls = []
    def prober():
        lc, fc = Conn(lport), Conn(fport)
        seq = 0
        while not stop.is_set():
            seq += 1
            ta = time.perf_counter()
            if redis:
                lc.call("SET", "probe", str(seq))
            else:
                lc.call("SET", "probe", "p", "STRING", str(seq))
            t0 = time.perf_counter()
            acks.append(t0 - ta)
            gets = 0
            while True:
                gets += 1
                if redis:
                    v = fc.call("GET", "probe")
                else:
                    v = fc.call("GET", "probe", "p")
                if v == str(seq).encode():
                    break
                if time.perf_counter() - t0 > 10:
                    break
            samples.append(time.perf_counter() - t0)
            polls.append(gets)
            time.sleep(0.005)
    w = ctx.Process(target=writer)
    p = threading.Thread(target=prober)
    t0 = time.perf_counter()
    w.start(); p.start()
    time.sleep(secs)
    stop.set(); w.join(); p.join()
    achieved = sent.value / (time.perf_counter() - t0)
    lc, fc = Conn(lport), Conn(fport)
    target = leader_offset(lc, redis)
    drained = False
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        if follower_offset(fc, redis) >= target:
            drained = True
            break
        time.sleep(0.01)
    samples.sort()
    acks.sort()
    pct = lambda v, q: v[min(len(v) - 1, int(len(v) * q))] * 1000
    p50, p99 = pct(samples, 0.5), pct(samples, 0.99)
    kept = drained and p99 < 100 and achieved >= 0.95 * rate
    print("%-14s rate %7d/s achieved %7d/s  lag p50 %7.3f ms  p99 %8.3f ms  samples %5d  kept up: %s"
          "  (probe SET ack p50 %.3f ms  p99 %.3f ms; one GET was enough in %.1f%%)"
          % (name, rate, achieved, p50, p99, len(samples), "yes" if kept else "no",
             pct(acks, 0.5), pct(acks, 0.99),
             100.0 * sum(1 for g in polls if g == 1) / max(1, len(polls))), flush=True)
    return kept, samples

servers = [("geohook-server", lp, fp, False), ("redis-server", rm, rr, True)]
best = {name: 0 for name, *_ in servers}
pooled = {}
for rate in rates:
    kept_all = {name: True for name, *_ in servers}
    for r in range(rounds):
        # Alternate which server goes first, so that a drift of the machine
        # within a rate does not always favour the same one.
        for name, l, f, redis in (servers if r % 2 == 0 else servers[::-1]):
            kept, samples = run(name, l, f, redis, rate)
            kept_all[name] &= kept
            pooled.setdefault((name, rate), []).extend(samples)
    for name in kept_all:
        if kept_all[name]:
            best[name] = rate
for k, v in best.items():
    print("highest rate kept up, %s: %d/s" % (k, v))
if rounds > 1:
    print("pooled over %d rounds:" % rounds)
    for rate in rates:
        line = "rate %7d/s" % rate
        for name, *_ in servers:
            v = sorted(pooled[(name, rate)])
            q = lambda x: v[min(len(v) - 1, int(len(v) * x))] * 1000
            line += "  %s lag p50 %.3f ms p99 %.3f ms (%d samples)" % (name, q(0.5), q(0.99), len(v))
        print(line, flush=True)
PY
