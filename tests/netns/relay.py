#!/usr/bin/env python3
"""A TCP relay for tests/netns.rs, run inside a network namespace.

    relay.py LISTEN_HOST:PORT TARGET_HOST:PORT [--flip N] [--delay-ms D]

Forwards every connection to TARGET. With --flip N it flips one bit of the byte at
offset N of each connection's client-to-server stream (a man in the middle); with
--delay-ms D it holds every chunk D milliseconds before passing it on, in both
directions (the one-way latency of a WAN link, which this kernel's tc cannot add).
Prints "ready" once it listens.
"""
import socket
import sys
import threading
import time
import collections


def pump(src, dst, flip, delay):
    queue = collections.deque()
    cond = threading.Condition()
    done = [False]

    def writer():
        while True:
            with cond:
                while not queue and not done[0]:
                    cond.wait()
                if not queue and done[0]:
                    break
                due, chunk = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(chunk)
            except OSError:
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    at = 0
    while True:
        try:
            chunk = src.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            break
        if flip is not None and at <= flip < at + len(chunk):
            b = bytearray(chunk)
            b[flip - at] ^= 0x10
            chunk = bytes(b)
        at += len(chunk)
        with cond:
            queue.append((time.monotonic() + delay, chunk))
            cond.notify()
    with cond:
        done[0] = True
        cond.notify()
    t.join()


def serve(client, target, flip, delay):
    try:
        server = socket.create_connection(target)
    except OSError:
        client.close()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=pump, args=(client, server, flip, delay), daemon=True).start()
    threading.Thread(target=pump, args=(server, client, None, delay), daemon=True).start()


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main():
    args = sys.argv[1:]
    listen, target = addr(args[0]), addr(args[1])
    flip = int(args[args.index("--flip") + 1]) if "--flip" in args else None
    delay = float(args[args.index("--delay-ms") + 1]) / 1000 if "--delay-ms" in args else 0.0
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(listen)
    ls.listen(64)
    print("ready", flush=True)
    while True:
        client, _ = ls.accept()
        serve(client, target, flip, delay)


if __name__ == "__main__":
    main()
