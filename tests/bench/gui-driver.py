#!/usr/bin/env python3
"""Runs the store window once for tests/bench/gui.sh and prints its timings.

Starts appbox-gui with APPBOX_GUI_TIMING set to the launch time, waits for
the frame that shows the catalog, types QUERY with xdotool one key at a time
(each key waits for the frame with its results), and prints one line per
timing the window reported: `first-frame MS`, `catalog-frame MS`,
`keystroke MS`. The environment (DISPLAY, the session bus, HOME, XDG dirs)
comes from the caller.

Usage: gui-driver.py APPBOX_GUI QUERY
"""
import os
import queue
import subprocess
import sys
import threading
import time

TIMEOUT = 60


def main():
    gui, query = sys.argv[1], sys.argv[2]
    env = dict(os.environ)
    env["APPBOX_GUI_TIMING"] = str(time.time_ns())
    app = subprocess.Popen([gui], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    lines = queue.Queue()

    def read():
        for line in app.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()

    def wait_for(prefix):
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"gui-driver: no '{prefix}' within {TIMEOUT} s")
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                sys.exit(f"gui-driver: no '{prefix}' within {TIMEOUT} s")
            if line is None:
                sys.exit(f"gui-driver: appbox-gui exited before '{prefix}'")
            if line.startswith("appbox-gui timing: " + prefix):
                what, ms = line[len("appbox-gui timing: "):].rsplit(" ", 1)
                print(f"{what.split()[0]} {ms}", flush=True)
                return

    try:
        wait_for("first-frame")
        wait_for("catalog-frame")
        # Let the window settle (icons, the rest of the snapshot) first.
        time.sleep(1.0)
        for key in query:
            name = "space" if key == " " else key
            subprocess.run(["xdotool", "key", name], check=True)
            wait_for("keystroke")
    finally:
        app.terminate()
        try:
            app.wait(timeout=5)
        except subprocess.TimeoutExpired:
            app.kill()


if __name__ == "__main__":
    main()
