#!/usr/bin/python3
"""Drives a GTK 4 window through AT-SPI, as a screen reader user would.

    atspi-driver.py [--app NAME] [--timeout SECONDS] COMMAND PATH... [ARGS]

PATH is one or more ROLE:NAME steps, each looked for inside the previous
one's subtree: `"list item:Sleeper" "push button:Update"` is the Update
button of the row named Sleeper. ROLE is the AT-SPI role name ("push
button", "entry", "toggle button", ...); NAME is the accessible name, or
the name of what labels the element, or `*` for any. Only elements on
screen count (see `on_screen`); the first in tree order is used.

Commands (each first waits up to the timeout for its element):
    wait PATH...            until it is on screen
    gone PATH...            until it is not
    click PATH...           its first action ("click", "toggle", ...), once
                            it is sensitive
    set-text PATH... TEXT   replaces an entry's text (EditableText)
    key PATH... KEYS        moves the keyboard focus to it with Tab, then
                            presses KEYS (xdotool names, space-separated):
                            for what GTK 4.8 has no action for, such as
                            activating a row or a search entry
    read PATH...            prints the names, descriptions, texts and
                            values ("value 0.5") in its subtree (hidden
                            parts too), one a line
    dump                    prints the app's tree

It exits 0 on success, 1 on a timeout or a refusal (with the app's tree on
stderr) and 2 on bad usage. Every run is a new process, so no stale cache
of the tree is read.
"""

import subprocess
import sys
import time

import pyatspi
from gi.repository import Atspi, GLib

POLL = 0.1
# Stops in the focus chain of a window, at most.
MAX_TABS = 40


class Failed(Exception):
    pass


def children(acc):
    try:
        count = acc.childCount
    except Exception:  # the object went away meanwhile
        return []
    out = []
    for i in range(count):
        try:
            child = acc.getChildAtIndex(i)
        except Exception:
            continue
        if child is not None:
            out.append(child)
    return out


def states(acc):
    try:
        return acc.getState()
    except Exception:
        return None


def has_state(acc, state):
    s = states(acc)
    return s is not None and s.contains(state)


def box(acc):
    """Its box in window coordinates, or None if it has no Component."""
    try:
        return acc.queryComponent().getExtents(pyatspi.WINDOW_COORDS)
    except NotImplementedError:
        return None


def parent(acc):
    try:
        return acc.parent
    except Exception:
        return None


def role(acc):
    try:
        return acc.getRoleName()
    except Exception:
        return None


def window_of(acc):
    """The toplevel (frame or dialog) that holds `acc`."""
    while acc is not None:
        up = parent(acc)
        if role(up) == "application":
            return acc
        acc = up
    return None


def within(acc, ancestor):
    while acc is not None:
        if acc == ancestor:
            return True
        acc = parent(acc)
    return False


def on_screen(acc):
    """GTK 4.8 sets SHOWING on windows only, VISIBLE on every widget whose
    `visible` is set (even on a stack page out of sight), and leaves a
    hidden page its old box. So: hit-test points of the part of its box that
    no scrolled window clips; what GTK finds there must be inside it. Where
    GTK finds only widgets it does not expose (an entry's text), the parent
    decides. Scrolled away entirely, it is shown if its scrolled window is."""
    if not has_state(acc, pyatspi.STATE_VISIBLE):
        return False
    try:
        own = box(acc)
        if own is None:
            return True  # no box of its own, such as a GtkStackPage
        x0, y0, x1, y1 = own.x, own.y, own.x + own.width, own.y + own.height
        scroller = None
        up = parent(acc)
        while up is not None and role(up) != "application":
            if role(up) == "scroll pane":
                clip = box(up)
                x0, y0 = max(x0, clip.x), max(y0, clip.y)
                x1, y1 = min(x1, clip.x + clip.width), min(y1, clip.y + clip.height)
                scroller = scroller or up
            up = parent(up)
        if x1 <= x0 or y1 <= y0:
            return own.width > 0 and scroller is not None and on_screen(scroller)
        window = window_of(acc).queryComponent()
        hits = [
            window.getAccessibleAtPoint(x0 + (x1 - x0) * i // 4, y0 + (y1 - y0) * j // 4,
                                        pyatspi.WINDOW_COORDS)
            for i in (1, 2, 3) for j in (1, 2, 3)
        ]
        if any(hit is not None and within(hit, acc) for hit in hits):
            return True
        if any(hit is not None for hit in hits):
            return False
        up = parent(acc)
        return up is not None and role(up) != "application" and on_screen(up)
    except Exception:  # gone meanwhile
        return False


def names(acc):
    """Its accessible name and the names of what labels it: GTK 4.8 names a
    button with a mnemonic "_Install Install", labelled by "Install"."""
    out = [acc.name]
    for relation in acc.getRelationSet():
        if relation.getRelationType() == pyatspi.RELATION_LABELLED_BY:
            out.extend(relation.getTarget(i).name for i in range(relation.getNTargets()))
    return out


def matches(acc, wanted_role, name):
    try:
        return role(acc) == wanted_role and (name == "*" or name in names(acc))
    except Exception:
        return False


def descendants(root):
    stack = list(reversed(children(root)))
    while stack:
        acc = stack.pop()
        yield acc
        stack.extend(reversed(children(acc)))


def resolve(root, path):
    """The first element on screen along `path`, a list of (role, name)."""
    candidates = [root]
    for wanted_role, name in path:
        candidates = [
            hit for c in candidates for hit in descendants(c)
            if matches(hit, wanted_role, name) and on_screen(hit)
        ]
        if not candidates:
            return None
    return candidates[0]


def app_root(name):
    for app in children(pyatspi.Registry.getDesktop(0)):
        try:
            if app.name == name:
                return app
        except Exception:
            continue
    return None


def describe(acc, depth=0):
    try:
        s = states(acc)
        shown = [] if s is None else [pyatspi.stateToString(x) for x in s.getStates()]
        short = ",".join(n for n in shown if n in ("focused", "checked", "sensitive"))
        try:
            action = acc.queryAction()
            actions = [action.getName(i) for i in range(action.nActions)]
        except NotImplementedError:
            actions = []
        line = f"{'  ' * depth}{role(acc)}:{acc.name} [{short}] {' '.join(actions)}"
    except Exception as e:
        line = f"{'  ' * depth}(gone: {e})"
    lines = [line]
    for child in children(acc):
        lines.extend(describe(child, depth + 1))
    return lines


def until(timeout, what, probe):
    """Polls `probe` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise Failed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


def spoken(acc):
    """What a screen reader says of `acc`: its name, description, text and
    value."""
    out = [acc.name] if acc.name else []
    try:
        text = acc.queryText()
        content = text.getText(0, text.characterCount)
        if content and content != acc.name:
            out.append(content)
    except NotImplementedError:
        pass
    if acc.description and acc.description != acc.name:
        out.append(acc.description)
    try:
        out.append(f"value {acc.queryValue().currentValue:g}")
        words = Atspi.Value.get_text(acc)  # AT-SPI 2.46; GTK 4.8 sets none
        if words:
            out.append(words)
    except NotImplementedError:
        pass
    return out


def label(acc):
    return f"{role(acc)}:{acc.name}"


def click(acc):
    action = acc.queryAction()
    actions = [action.getName(i) for i in range(action.nActions)]
    if not actions:
        raise Failed(f"{label(acc)} has no action")
    if not action.doAction(0):
        raise Failed(f"{label(acc)} refused {actions[0]!r}")


def set_text(acc, text):
    try:
        editable = acc.queryEditableText()
    except NotImplementedError:
        raise Failed(f"{label(acc)} has no EditableText")
    if not editable.setTextContents(text):
        raise Failed(f"{label(acc)} refused the text")


def xdotool(*args):
    out = subprocess.run(["xdotool", *args], check=True, timeout=30,
                         stdout=subprocess.PIPE, text=True)
    return out.stdout


def press(acc, path, root, timeout, keys):
    """Moves the keyboard focus to `acc`, found at `path`, with Tab, as a
    keyboard user does (GTK 4.8 implements no Component.grabFocus), then
    presses `keys` (xdotool names) in its window."""
    title = window_of(acc).name
    window = xdotool("search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[0]
    for _ in range(MAX_TABS):
        # Rows are rebuilt when the window refreshes: look it up again.
        acc = until(timeout, label(acc), lambda: resolve(root, path))
        if has_state(acc, pyatspi.STATE_FOCUSED):
            break
        xdotool("windowfocus", "--sync", window, "key", "--clearmodifiers", "Tab")
        time.sleep(POLL)
    else:
        raise Failed(f"{MAX_TABS} presses of Tab did not reach {label(acc)}")
    xdotool("windowfocus", "--sync", window, "key", "--clearmodifiers", *keys)


def parse_path(steps):
    path = []
    for step in steps:
        wanted_role, sep, name = step.partition(":")
        if not sep or not wanted_role:
            usage(f"a step is ROLE:NAME, not {step!r}")
        path.append((wanted_role, name))
    return path


def usage(message):
    print(f"atspi-driver: {message}\n\n{__doc__.strip()}", file=sys.stderr)
    sys.exit(2)


def run(command, args, root, timeout):
    if command == "dump":
        print("\n".join(describe(root)))
        return
    extra = []
    if command in ("set-text", "key"):
        if len(args) < 2:
            usage(f"{command} needs a path and one more argument")
        args, extra = args[:-1], args[-1:]
    path = parse_path(args)
    if not path:
        usage(f"{command} needs a path")
    what = " > ".join(f"{r}:{n}" for r, n in path)

    if command == "gone":
        until(timeout, f"{what} to go", lambda: True if resolve(root, path) is None else None)
        return
    acc = until(timeout, what, lambda: resolve(root, path))
    if command == "wait":
        pass
    elif command == "click":
        # A button made insensitive while work runs refuses to act.
        until(timeout, f"{what} to be sensitive",
              lambda: True if has_state(acc, pyatspi.STATE_SENSITIVE) else None)
        click(acc)
    elif command == "set-text":
        set_text(acc, extra[0])
    elif command == "key":
        press(acc, path, root, timeout, extra[0].split())
    elif command == "read":
        lines = [line for d in [acc, *descendants(acc)] for line in spoken(d)]
        # A row's name is its title label's too: say it once.
        print("\n".join(line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]))
    else:
        usage(f"unknown command {command!r}")


def main(argv):
    app_name, timeout = "appbox-gui", 10.0
    while argv and argv[0].startswith("--"):
        if len(argv) < 2:
            usage(f"{argv[0]} needs a value")
        if argv[0] == "--app":
            app_name = argv[1]
        elif argv[0] == "--timeout":
            timeout = float(argv[1])
        else:
            usage(f"unknown option {argv[0]}")
        argv = argv[2:]
    if not argv:
        usage("no command")
    root = None
    try:
        root = until(timeout, f"the app {app_name!r} on the accessibility bus",
                     lambda: app_root(app_name))
        run(argv[0], argv[1:], root, timeout)
    except (Failed, subprocess.SubprocessError, GLib.Error) as e:
        tree = "\n".join(describe(root)) if root is not None else "(no app)"
        print(f"atspi-driver: {e}\n{tree}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
