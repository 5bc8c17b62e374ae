#!/usr/bin/env python3
"""Turns an `appbox run --print-plan` JSON plan into the bwrap command line that
builds the same sandbox, for a like-for-like launch benchmark.

Usage: plan-to-bwrap.py PLAN.json FILES_DIR
Prints the command on one line (no argument may contain a space). Generated
files (/etc/passwd and friends) are written under FILES_DIR and bound read-only.

What bwrap cannot do is left out and said on stderr: Landlock, the appbox
seccomp program, and the filtered Xauthority. bwrap's own --dev stands in for
appbox's /dev (the same nodes, a private devpts and /dev/shm).
"""
import json
import os
import sys

plan_file, files_dir = sys.argv[1:3]
plan = json.load(open(plan_file))
namespaces = plan["namespaces"]
args = ["bwrap", "--die-with-parent", "--new-session"]
args += ["--unshare-user", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
if namespaces["ipc"]:
    args.append("--unshare-ipc")
if namespaces["net"]:
    args.append("--unshare-net")
args += ["--hostname", plan["hostname"]]

BIND = {"ReadOnly": "--ro-bind", "ReadWrite": "--bind", "Device": "--dev-bind"}
own_dev = any(op["op"] == "tmpfs" and op["path"] == "/dev" for op in plan["mounts"])
written = 0
for op in plan["mounts"]:
    kind = op["op"]
    target = op.get("path") or op.get("dest")
    under_dev = target == "/dev" or target.startswith("/dev/")
    if own_dev and under_dev:
        if kind == "tmpfs" and target == "/dev":
            args += ["--dev", "/dev"]
        continue
    if kind == "dir":
        args += ["--perms", f"{op['mode']:04o}", "--dir", target]
    elif kind == "tmpfs":
        args += ["--perms", f"{op['mode']:04o}", "--tmpfs", target]
    elif kind == "bind":
        flag = BIND[op["access"]] + ("-try" if op["optional"] else "")
        args += [flag, op["source"], target]
    elif kind == "proc":
        args += ["--proc", target]
    elif kind == "symlink":
        args += ["--symlink", op["target"], target]
    elif kind == "file":
        written += 1
        path = os.path.join(files_dir, f"file-{written}")
        with open(path, "w") as f:
            f.write(op["contents"])
        args += ["--ro-bind", path, target]
    else:
        print(f"plan-to-bwrap: {kind} at {target} has no bwrap equivalent; left out", file=sys.stderr)
args.append("--clearenv")
for name, value in plan["env"].items():
    args += ["--setenv", name, value]
args += ["--chdir", plan["cwd"]]
args += plan["argv"]
if any(" " in a for a in args):
    sys.exit("plan-to-bwrap: an argument contains a space; hyperfine -N cannot pass it")
print(" ".join(args))
