#!/usr/bin/python3
"""Helper of tests/bench/portal.sh; prints one JSON value on stdout.

It runs inside an appbox sandbox (given to `python3 -c`, since the repository
is not visible there) or on the host, with the host's python3 and PyGObject:

  open N TAG          N calls of FileChooser.OpenFile, one after the other,
                      each with its own handle_token (TAG + number), as a GTK
                      app makes them: it subscribes to the Response, calls, and
                      waits. Prints {"uris": [...], "ms": [...]}, ms being the
                      time from the call to the Response. Any answer but
                      success (0) is an error.
  small-reads PATH N ROUNDS
                      ROUNDS times N loops of os.open, os.read(4096), os.close
                      of PATH, after one round of warm-up. Prints the time of
                      one loop in µs, for each round.
  flatpak-add APP PATH...
                      Flatpak's document portal: Documents.Add for each PATH,
                      then GrantPermissions(read) to APP. Prints the paths under
                      doc/by-app/APP/, which a Flatpak app sees as
                      /run/user/UID/doc/ID/NAME.
"""

import json
import os
import sys
import time


def bus_call(bus, dest, path, iface, method, args, reply_type, fds=None):
    from gi.repository import GLib

    reply_type = GLib.VariantType(reply_type) if reply_type else None
    if fds is None:
        return bus.call_sync(dest, path, iface, method, args, reply_type, 0, -1, None)
    reply, _ = bus.call_with_unix_fd_list_sync(
        dest, path, iface, method, args, reply_type, 0, -1, fds, None
    )
    return reply


def open_files(count, tag):
    from gi.repository import Gio, GLib

    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    sender = bus.get_unique_name()[1:].replace(".", "_")
    loop = GLib.MainLoop()
    got = {}

    def on_response(conn, sender_name, obj, iface, signal, params):
        got["at"] = time.perf_counter()
        got["response"], got["results"] = params.unpack()
        loop.quit()

    def timed_out():
        got.setdefault("timeout", True)
        loop.quit()
        return False

    uris, times = [], []
    for i in range(count):
        token = f"{tag}{i}"
        handle = f"/org/freedesktop/portal/desktop/request/{sender}/{token}"
        got.clear()
        sub = bus.signal_subscribe(
            "org.freedesktop.portal.Desktop", "org.freedesktop.portal.Request",
            "Response", handle, None, Gio.DBusSignalFlags.NONE, on_response,
        )
        options = {"handle_token": GLib.Variant("s", token)}
        start = time.perf_counter()
        bus_call(
            bus, "org.freedesktop.portal.Desktop", "/org/freedesktop/portal/desktop",
            "org.freedesktop.portal.FileChooser", "OpenFile",
            GLib.Variant("(ssa{sv})", ("", "Benchmark", options)), "(o)",
        )
        if "at" not in got:
            timer = GLib.timeout_add_seconds(30, timed_out)
            loop.run()
            if "timeout" not in got:
                GLib.source_remove(timer)
        bus.signal_unsubscribe(sub)
        if got.get("response") != 0:
            sys.exit(f"portal-client: OpenFile #{i} answered {got!r}")
        times.append((got["at"] - start) * 1000)
        uris.append(got["results"]["uris"][0])
    print(json.dumps({"uris": uris, "ms": times}))


def small_reads(path, count, rounds):
    def loop(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            fd = os.open(path, os.O_RDONLY)
            os.read(fd, 4096)
            os.close(fd)
        return (time.perf_counter_ns() - start) / n / 1000

    loop(count)
    print(json.dumps([loop(count) for _ in range(rounds)]))


def flatpak_add(app, paths):
    from gi.repository import Gio, GLib

    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    docs = ("org.freedesktop.portal.Documents", "/org/freedesktop/portal/documents",
            "org.freedesktop.portal.Documents")
    mount = bus_call(bus, *docs, "GetMountPoint", None, "(ay)").unpack()[0]
    mount = bytes(mount).rstrip(b"\0").decode()
    out = []
    for path in paths:
        fds = Gio.UnixFDList.new()
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        index = fds.append(fd)
        os.close(fd)
        doc = bus_call(bus, *docs, "Add", GLib.Variant("(hbb)", (index, True, True)),
                       "(s)", fds).unpack()[0]
        bus_call(bus, *docs, "GrantPermissions",
                 GLib.Variant("(ssas)", (doc, app, ["read"])), None)
        out.append(os.path.join(mount, "by-app", app, doc, os.path.basename(path)))
    print(json.dumps(out))


def main(argv):
    if len(argv) >= 3 and argv[0] == "open":
        open_files(int(argv[1]), argv[2])
    elif len(argv) == 4 and argv[0] == "small-reads":
        small_reads(argv[1], int(argv[2]), int(argv[3]))
    elif len(argv) >= 3 and argv[0] == "flatpak-add":
        flatpak_add(argv[1], argv[2:])
    else:
        sys.exit("usage: portal-client.py open N TAG | small-reads PATH N ROUNDS | "
                 "flatpak-add APP PATH...")


main(sys.argv[1:])
