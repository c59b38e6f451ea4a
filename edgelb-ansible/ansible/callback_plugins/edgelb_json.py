# -*- coding: utf-8 -*-
# Part of edgelb (Apache-2.0).
"""Writes every per-host task result as one JSON line, for edgelb to read back."""

from __future__ import annotations

DOCUMENTATION = r"""
name: edgelb_json
type: notification
short_description: Per-host task results as JSON lines
description:
  - Appends one JSON object per line to the file named by the environment variable
    E(EDGELB_ANSIBLE_RESULTS) for every task result (ok, failed, skipped, unreachable) and
    a final C(stats) line. Does nothing when the variable is unset.
  - 'Result lines: C({"v": 1, "event": "result", "host": ..., "task": ..., "step": ...,
    "status": "ok|failed|skipped|unreachable", "ignored": bool, "seconds": float,
    "result": {...}}). C(step) is the task variable C(edgelb_step) (null for tasks without
    one); C(seconds) the time from the task''s start on that host; C(result) is the module''s
    result without C(invocation).'
  - The file is flushed after every line, so results written before an interrupted run are
    kept.
requirements:
  - enable it with C(callbacks_enabled = edgelb_json) and set E(EDGELB_ANSIBLE_RESULTS)
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

FORMAT_VERSION = 1
DROPPED_KEYS = ("invocation",)


def _part(result, name):
    # ansible-core 2.19 names them `host`, `task`, `result`; older releases only had the
    # underscored ones.
    value = getattr(result, name, None)
    if value is None:
        value = getattr(result, "_" + name, None)
    return value


def _clean(value):
    if isinstance(value, dict):
        return {
            str(k): _clean(v)
            for k, v in value.items()
            if k not in DROPPED_KEYS and not str(k).startswith("_ansible")
        }
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "edgelb_json"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = os.environ.get("EDGELB_ANSIBLE_RESULTS")
        self._out = open(path, "a", encoding="utf-8") if path else None
        self._started = {}

    def _write(self, record):
        if self._out is None:
            return
        record["v"] = FORMAT_VERSION
        self._out.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._out.flush()

    def _result(self, result, status, ignored=False):
        host = _part(result, "host")
        task = _part(result, "task")
        data = _part(result, "result") or {}
        step = None
        name = host.get_name() if host is not None else None
        started = self._started.pop((name, getattr(task, "_uuid", None)), None)
        task_vars = getattr(task, "vars", None) or {}
        if "edgelb_step" in task_vars:
            step = str(task_vars["edgelb_step"])
        self._write(
            {
                "event": "result",
                "host": name,
                "task": task.get_name() if task is not None else None,
                "step": step,
                "status": status,
                "ignored": bool(ignored),
                "seconds": round(time.monotonic() - started, 3) if started else None,
                "result": _clean(dict(data)),
            }
        )

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), getattr(task, "_uuid", None))] = time.monotonic()

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed", ignored=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._write(
            {
                "event": "stats",
                "hosts": {h: _clean(stats.summarize(h)) for h in hosts},
            }
        )
