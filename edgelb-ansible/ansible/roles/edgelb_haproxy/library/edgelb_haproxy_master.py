#!/usr/bin/python
# -*- coding: utf-8 -*-
# Part of edgelb (Apache-2.0).
"""Reload HAProxy through its master CLI and confirm that the reload took."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgelb_haproxy_master
short_description: Swap in a validated HAProxy config, reload through the master socket, confirm
description:
  - Reads the master CLI's C(show proc) first; when the master socket does not answer, nothing
    is touched (pre-flight).
  - With O(new), keeps the live file O(live) as O(backup) and renames O(new) over O(live)
    (atomic; the same file system).
  - Reloads HAProxy (the master socket's C(reload), or O(reload_command) such as
    C(systemctl reload haproxy)), then polls C(show proc) until the master's reload counter
    moves. A C(reload) sent to the master socket answers nothing and looks successful even
    when the new config fails; the outcome only shows in C(show proc). The reload took when
    the counter moved, the C([failed: N]) counter did not grow (a good reload resets it to 0),
    and a fresh worker (0 reloads old) serves.
  - While the master re-executes itself its socket refuses connections for a moment; those
    errors are retried until O(timeout).
  - The result says how far it got: C(stage) (preflight, swap, reload), C(swapped), C(sent).
options:
  socket:
    description: HAProxy's master CLI socket (the C(-S) argument).
    type: path
    required: true
  new:
    description: A validated config to rename over O(live) before reloading.
    type: path
  live:
    description: The live config (required with O(new)).
    type: path
  backup:
    description: Where the live config is kept before the swap (required with O(new)).
    type: path
  reload:
    description: Reload and confirm; V(false) only reads C(show proc).
    type: bool
    default: true
  reload_command:
    description: Reload with this command (argv) instead of the master socket's C(reload).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for the reload to show in C(show proc).
    type: float
    default: 10
"""

RETURN = r"""
stage:
  description: The last stage reached (preflight, swap, reload).
  type: str
swapped:
  description: Whether O(new) was renamed over O(live).
  type: bool
sent:
  description: Whether a reload was sent.
  type: bool
reloaded:
  description: Whether the reload was confirmed.
  type: bool
before:
  description: The master's state before (pid, reloads, failed, fresh_workers).
  type: dict
after:
  description: The master's state after the reload.
  type: dict
"""

import os
import shutil
import socket
import time

from ansible.module_utils.basic import AnsibleModule


class CliError(Exception):
    """The master socket could not be reached or answered nonsense."""


def cli(path, command, timeout):
    """Sends one command and returns the whole answer. HAProxy answers a non-interactive
    connection only once the client closes its writing half."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(command.encode("ascii") + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    except OSError as exc:
        raise CliError("%s: %s" % (path, exc)) from exc
    finally:
        sock.close()


def parse_show_proc(text):
    """The master's pid, reload and failure counters and the pids of fresh workers."""
    section = "head"
    master = None
    fresh = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comment = line[1:].strip()
            if comment.startswith("<PID>"):
                section = "head"
            elif comment == "workers":
                section = "workers"
            else:
                section = "other"
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit() or not fields[2].isdigit():
            continue
        if section == "head" and fields[1] == "master":
            failed = 0
            if "[failed:" in line:
                count = line.split("[failed:", 1)[1].split("]", 1)[0].strip()
                failed = int(count) if count.isdigit() else 0
            master = {"pid": int(fields[0]), "reloads": int(fields[2]), "failed": failed}
        elif section == "workers" and fields[1] == "worker" and fields[2] == "0":
            fresh.append(int(fields[0]))
    if master is None:
        raise CliError("no master line in `show proc`: %r" % text[:300])
    master["fresh_workers"] = fresh
    return master


def show_proc(path, timeout):
    return parse_show_proc(cli(path, "show proc", timeout))


def verdict(before, now):
    """True: the reload took; False: it failed; None: not seen yet."""
    if now["pid"] != before["pid"]:
        return bool(now["fresh_workers"])
    if now["reloads"] == before["reloads"]:
        return None
    # A failed reload adds one to `[failed: N]`; a good one resets it to 0 (HAProxy 2.6).
    return now["failed"] <= before["failed"] and bool(now["fresh_workers"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            new=dict(type="path"),
            live=dict(type="path"),
            backup=dict(type="path"),
            reload=dict(type="bool", default=True),
            reload_command=dict(type="list", elements="str", default=[]),
            timeout=dict(type="float", default=10.0),
        ),
        required_by={"new": ("live", "backup")},
        supports_check_mode=True,
    )
    p = module.params
    path = p["socket"]
    timeout = max(p["timeout"], 0.1)
    io_timeout = min(timeout, 5.0)
    state = dict(stage="preflight", swapped=False, sent=False, reloaded=False)

    try:
        before = show_proc(path, io_timeout)
    except CliError as exc:
        module.fail_json(
            msg="cannot read haproxy's master socket (is haproxy running in master-worker "
            "mode with -S %s?): %s" % (path, exc),
            **state
        )

    if module.check_mode:
        module.exit_json(changed=False, before=before, after=before, **state)

    if p["new"]:
        state["stage"] = "swap"
        try:
            if os.path.exists(p["live"]):
                shutil.copy2(p["live"], p["backup"])
            os.rename(p["new"], p["live"])
        except OSError as exc:
            module.fail_json(
                msg="keeping %s as %s and renaming %s over it failed: %s"
                % (p["live"], p["backup"], p["new"], exc),
                before=before,
                **state
            )
        state["swapped"] = True

    if not p["reload"]:
        module.exit_json(changed=state["swapped"], before=before, after=before, **state)

    state["stage"] = "reload"
    argv = p["reload_command"]
    if argv:
        rc, out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(
                msg="`%s` failed (exit %d): %s" % (" ".join(argv), rc, (err or out).strip()),
                before=before,
                **state
            )
    else:
        try:
            cli(path, "reload", io_timeout)
        except CliError:
            # The master may close the connection as it re-executes itself; the outcome is
            # read from `show proc` below either way.
            pass
    state["sent"] = True

    deadline = time.monotonic() + timeout
    last = "no reload showed up in the master's `show proc`"
    now = before
    while True:
        try:
            now = show_proc(path, io_timeout)
            outcome = verdict(before, now)
            last = "no reload showed up in the master's `show proc`"
        except CliError as exc:
            outcome = None
            last = str(exc)
        if outcome is True:
            state["reloaded"] = True
            module.exit_json(changed=True, before=before, after=now, **state)
        if outcome is False:
            module.fail_json(
                msg="haproxy could not start a worker with the new config (the old worker "
                "keeps serving; see haproxy's log)",
                before=before,
                after=now,
                **state
            )
        if time.monotonic() >= deadline:
            module.fail_json(
                msg="%s within %.1fs" % (last, timeout), before=before, after=now, **state
            )
        time.sleep(0.02)


if __name__ == "__main__":
    main()
