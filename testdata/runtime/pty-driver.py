#!/usr/bin/env python3
"""Drives `kiln run -it` through a real pseudo-terminal for the pty test.

Usage: pty-driver.py KILN ARGS...  (the command must run the script below)

Starts the command on a new pty sized 24x80, waits for the container to
print READY, resizes the terminal to 40x132 (the kernel sends SIGWINCH to
kiln), types Ctrl-C, and prints everything the container wrote, then the
exit status as `EXIT=<n>`.
"""
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def read_until(fd, needle, seen, deadline):
    while needle not in seen:
        left = deadline - time.time()
        if left <= 0:
            raise SystemExit("timed out waiting for %r; got %r" % (needle, seen))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def main():
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.argv[1], sys.argv[1:])
    set_size(fd, 24, 80)
    deadline = time.time() + 20
    seen = read_until(fd, b"READY", b"", deadline)
    set_size(fd, 40, 132)
    seen = read_until(fd, b"SIZE 40 132", seen, deadline)
    os.write(fd, b"\x03")
    seen = read_until(fd, b"DONE", seen, deadline)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(seen.decode("utf-8", "replace"))
    sys.stdout.write("\nEXIT=%d\n" % os.waitstatus_to_exitcode(status))


main()
