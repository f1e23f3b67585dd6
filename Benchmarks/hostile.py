#!/usr/bin/env python3
"""Hostile load on one node, for Benchmarks/hostile.sh (stdlib only).

    hostile.py HOST HTTP_PORT CLUSTER_PORT OUTDIR [--slowloris 400] [--idle 300] [--datagrams 60000]
               [--rate 3000] [--max-seconds 120]

At once, until OUTDIR/stop exists (or --max-seconds pass, whichever is first; the datagrams are
all sent first unless the time runs out):
  - slowloris: --slowloris HTTP connections to the gateway, each sending a request line and then a
    header of a few bytes every 2-4 s, never finishing the head. One the node closes is opened again.
  - idle peers: --idle TCP connections to the cluster port; half send nothing, half the first 10
    bytes of a HELLO frame (length, version 6, type 1, then a few payload bytes), and hold. One the
    node closes is opened again, and how long the node held it is recorded.
  - datagrams: --datagrams UDP datagrams to the cluster port at --rate per second: half random
    bytes (1-1400), half framed as a membership datagram (version 6, type 0x10, 12-byte nonce,
    ciphertext, 16-byte tag) but with random contents: to the node, sealed with a key it lacks.
Writes OUTDIR/ready once every connection is open, OUTDIR/datagrams-done once the datagrams are
sent, and OUTDIR/summary (key=value lines) at the end.
"""
import argparse
import os
import random
import selectors
import socket
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("host")
ap.add_argument("http_port", type=int)
ap.add_argument("cluster_port", type=int)
ap.add_argument("outdir")
ap.add_argument("--slowloris", type=int, default=400)
ap.add_argument("--idle", type=int, default=300)
ap.add_argument("--datagrams", type=int, default=60000)
ap.add_argument("--rate", type=int, default=3000)
ap.add_argument("--max-seconds", type=float, default=120)
args = ap.parse_args()

start = time.monotonic()
deadline = start + args.max_seconds
stop_file = os.path.join(args.outdir, "stop")
lock = threading.Lock()
stats = {
    "slowloris_opened": 0, "slowloris_closed_by_node": 0, "slowloris_connect_failed": 0,
    "slowloris_answered": 0, "slowloris_bytes_sent": 0,
    "idle_opened": 0, "idle_closed_by_node": 0, "idle_connect_failed": 0, "idle_held_ms": [],
    "datagrams_sent": 0, "datagrams_failed": 0,
}
statuses = {}


def bump(key, n=1):
    with lock:
        stats[key] += n


def done():
    return time.monotonic() >= deadline or os.path.exists(stop_file)


def touch(name):
    open(os.path.join(args.outdir, name), "w").close()


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((args.host, port))
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s


def slowloris():
    """Connections sending an unfinished request head a few bytes at a time."""
    sel = selectors.DefaultSelector()
    due = {}  # socket -> when it next sends

    def open_one():
        s = connect(args.http_port)
        if s is None:
            bump("slowloris_connect_failed")
            return False
        try:
            head = b"GET /counter HTTP/1.1\r\nHost: %s\r\n" % args.host.encode()
            s.send(head)
            bump("slowloris_bytes_sent", len(head))
        except OSError:
            s.close()
            bump("slowloris_closed_by_node")
            return False
        sel.register(s, selectors.EVENT_READ)
        due[s] = time.monotonic() + random.uniform(2, 4)
        bump("slowloris_opened")
        return True

    def drop(s):
        sel.unregister(s)
        del due[s]
        s.close()

    for _ in range(args.slowloris):
        if done():
            break
        open_one()
    ready_marks["slowloris"] = True
    while not done():
        # Whatever the node sends (an answer, a close) ends that connection; open another.
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data:
                bump("slowloris_answered")
                line = data.split(b"\r\n", 1)[0].decode(errors="replace")
                with lock:
                    statuses[line] = statuses.get(line, 0) + 1
            bump("slowloris_closed_by_node")
            drop(s)
        now = time.monotonic()
        for s in [s for s, t in due.items() if t <= now]:
            chunk = b"X-%d: %d\r\n" % (random.randrange(100), random.randrange(10))
            try:
                s.send(chunk)
                bump("slowloris_bytes_sent", len(chunk))
                due[s] = now + random.uniform(2, 4)
            except OSError:
                bump("slowloris_closed_by_node")
                drop(s)
        # Keep the count: one connection opened per pass at most for each one lost (no storm).
        missing = args.slowloris - len(due)
        for _ in range(min(missing, 50)):
            if not open_one():
                break
    for s in list(due):
        drop(s)


def idle_peers():
    """Connections to the cluster port that never finish a handshake."""
    sel = selectors.DefaultSelector()
    opened_at = {}
    hello_part = bytes([0, 0, 0, 100, 6, 1, 0, 5]) + b"evi"  # length 100, v6, HELLO, role 0, "evi…"

    def open_one(i):
        s = connect(args.cluster_port)
        if s is None:
            bump("idle_connect_failed")
            return False
        if i % 2:
            try:
                s.send(hello_part)
            except OSError:
                s.close()
                bump("idle_closed_by_node")
                return False
        sel.register(s, selectors.EVENT_READ, i)
        opened_at[s] = time.monotonic()
        bump("idle_opened")
        return True

    counter = iter(range(10**9))
    for _ in range(args.idle):
        if done():
            break
        open_one(next(counter))
    ready_marks["idle"] = True
    while not done():
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)  # an ERROR frame, then the close
            except OSError:
                data = b""
            if data:
                continue
            with lock:
                stats["idle_closed_by_node"] += 1
                stats["idle_held_ms"].append(int((time.monotonic() - opened_at[s]) * 1000))
            sel.unregister(s)
            del opened_at[s]
            s.close()
        # Keep the count: at most 50 opened per pass.
        for _ in range(min(args.idle - len(opened_at), 50)):
            if done() or not open_one(next(counter)):
                break
    for s in list(opened_at):
        sel.unregister(s)
        s.close()


def datagrams():
    """Random and wrongly sealed datagrams to the cluster port, paced."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random()
    per_tick = max(1, args.rate // 100)
    sent = 0
    next_tick = time.monotonic()
    while sent < args.datagrams and time.monotonic() < deadline:
        for _ in range(min(per_tick, args.datagrams - sent)):
            if sent % 2:
                d = rng.randbytes(rng.randint(1, 1400))
            else:
                d = bytes([6, 0x10]) + rng.randbytes(12) + rng.randbytes(rng.randint(8, 400)) + rng.randbytes(16)
            try:
                u.sendto(d, (args.host, args.cluster_port))
            except OSError:
                bump("datagrams_failed")
            sent += 1
        next_tick += 0.01
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    stats["datagrams_sent"] = sent
    u.close()
    touch("datagrams-done")


ready_marks = {}
threads = [threading.Thread(target=f, daemon=True) for f in (slowloris, idle_peers)]
for t in threads:
    t.start()
while len(ready_marks) < 2 and not done():
    time.sleep(0.05)
touch("ready")
datagrams()
while not done():
    time.sleep(0.1)
for t in threads:
    t.join(timeout=10)

held = sorted(stats.pop("idle_held_ms"))
with open(os.path.join(args.outdir, "summary"), "w") as f:
    for k, v in stats.items():
        f.write(f"{k}={v}\n")
    f.write("slowloris_answer_statuses=%s\n" % ";".join(f"{k} x{v}" for k, v in statuses.items()))
    f.write("idle_held_ms_p50=%s\n" % (held[len(held) // 2] if held else "-"))
    f.write("idle_held_ms_max=%s\n" % (held[-1] if held else "-"))
    f.write("seconds=%.1f\n" % (time.monotonic() - start))
