# -*- coding: utf-8 -*-
# Copyright (c) hotreload contributors
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Reading the ``hotreload`` CLI's JSON Lines and mapping its results to Ansible results.

Everything here is plain Python with no Ansible import, so the unit tests (pytest) exercise
the exact code the modules run, without Ansible. The modules only add option handling and
``run_command``.

The contract (README "Output", ``hotreload-cli/src/output.rs``): one JSON object per line,
each ``{"schema_version": 1, "type": ..., "time": ..., "data": {...}}``, the last one always
``type: result``. Output without ``schema_version`` is version 0 (hotreload before the
contract was versioned): read the same way, and ``status --json`` there prints the bare
status object. A major version this file does not know is refused with a clear message
rather than guessed at.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# The newest major version of the JSON Lines contract this collection understands.
SCHEMA_MAJOR = 1

# Phases `hotreload status` can report; any other string is treated as "unknown"
# (a newer hotreload may name more), but returned as it was printed.
KNOWN_PHASES = ("steady", "spawned", "drained", "unknown")

# Module outcomes (the `outcome` return value), each with what it tells an operator.
OUTCOMES = {
    "upgraded": "the new build serves; the old master is retired",
    "kept_old": "the new build serves; the old master is kept without workers (keep_old)",
    "committed": "a kept-old upgrade was committed: the old master is retired",
    "unchanged": "nothing to do: the host is already in the requested state",
    "rolled_back": "the old build serves (rolled back)",
    "would_upgrade": "check mode: the upgrade would run (the plan is in `plan`)",
    "would_roll_back": "check mode: a rollback would run",
    "would_commit": "check mode: a commit would run",
    "refused": "hotreload refused before changing anything",
    "locked": "another hotreload holds the lock on this server",
    "needs_attention": "hotreload could not restore a healthy state: a person must look",
    "error": "hotreload could not be run, or its output could not be read",
}

# The CLI's `result.outcome` words, mapped to module outcomes for `state: upgraded`.
_UPGRADE_OUTCOMES = {
    "committed": "upgraded",
    "ok": "upgraded",
    "kept-old": "kept_old",
    "unchanged": "unchanged",
    "dry-run": "would_upgrade",
    "rolled-back": "rolled_back",
    "refused": "refused",
    "locked": "locked",
    "unrecovered": "needs_attention",
    "interrupted": "needs_attention",
    "cancelled": "needs_attention",
    "failed": "needs_attention",
}

# When the outcome word is one this file does not know, the exit code decides.
_EXIT_OUTCOMES = {
    0: "upgraded",
    1: "rolled_back",
    2: "error",
    3: "refused",
    4: "locked",
    5: "needs_attention",
}

# Outcomes after which the module reports failure.
FAILED_OUTCOMES = ("rolled_back", "refused", "locked", "needs_attention", "error")

# What the operator should do when hotreload gave no hint of its own.
_DEFAULT_HINTS = {
    "rolled_back": "the old version is serving again; fix the new build, then run the rollout again",
    "refused": "nothing was changed; fix the problem above and run again",
    "locked": "another hotreload is working on this server; wait for it to finish and run again",
    "needs_attention": "run `hotreload status --pid-file PID_FILE` on the host and follow its advice",
    "error": "run the same hotreload command on the host by hand to see what it prints",
}


class CliOutputError(Exception):
    """The CLI's output could not be understood; ``hint`` says what to do."""

    def __init__(self, message, hint=None):
        super(CliOutputError, self).__init__(message)
        self.message = message
        self.hint = hint or _DEFAULT_HINTS["error"]


def _excerpt(text, limit=400):
    text = (text or "").strip()
    if len(text) > limit:
        return text[:limit] + "..."
    return text


def schema_version_of(record):
    """The major schema version of one record: 0 when the field is absent (older CLIs).

    Accepts an integer or a ``"MAJOR.MINOR"`` string, so a minor revision that only adds
    fields keeps working; raises CliOutputError for anything else.
    """
    if not isinstance(record, dict) or "schema_version" not in record:
        return 0
    raw = record["schema_version"]
    major = None
    if isinstance(raw, bool):
        major = None
    elif isinstance(raw, int):
        major = raw
    elif isinstance(raw, str):
        head = raw.split(".", 1)[0]
        if head.isdigit():
            major = int(head)
    if major is None or major < 0:
        raise CliOutputError(
            "hotreload printed an unreadable schema_version %r" % (raw,),
            "use a hotreload release that matches this collection",
        )
    if major > SCHEMA_MAJOR:
        raise CliOutputError(
            "hotreload speaks JSON Lines schema version %s; this collection reads versions "
            "0 to %d" % (raw, SCHEMA_MAJOR),
            "upgrade the hotreload.hotreload collection (or install the hotreload release "
            "it was made for)",
        )
    return major


def parse_json_lines(stdout, stderr=""):
    """Splits the CLI's stdout into (events, result data, schema version).

    Lines that are not JSON objects are skipped (a stray line must not hide the result),
    but output with no result record at the end is an error: the command did not finish
    normally (killed, crashed) or is not hotreload.
    """
    records = []
    for line in (stdout or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    if not records:
        raise CliOutputError(
            "hotreload printed no JSON (stdout: %r, stderr: %r)"
            % (_excerpt(stdout), _excerpt(stderr)),
        )
    version = 0
    for record in records:
        version = max(version, schema_version_of(record))
    last = records[-1]
    if last.get("type") != "result" or not isinstance(last.get("data"), dict):
        raise CliOutputError(
            "hotreload's output ended without a result record: it did not finish normally "
            "(last line: %r, stderr: %r)" % (_excerpt(json.dumps(last), 200), _excerpt(stderr)),
            "run `hotreload status --pid-file PID_FILE` on the host to see the state it left",
        )
    events = [r for r in records[:-1] if "type" in r]
    return events, last["data"], version


def normalize_phase(phase):
    """(phase for branching, phase as printed): unrecognised phases count as unknown."""
    if isinstance(phase, str) and phase in KNOWN_PHASES:
        return phase, phase
    return "unknown", phase


def parse_status(stdout, stderr=""):
    """Parses ``hotreload status --json``: returns (status object or None, result data or None).

    Version 1: one ``result`` record whose ``data.status`` is the status object. Version 0:
    the bare status object, or a ``result`` record (without status) when the system could
    not be read at all.
    """
    lines = [line.strip() for line in (stdout or "").splitlines() if line.strip()]
    objects = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    if not objects:
        raise CliOutputError(
            "hotreload status printed no JSON (stdout: %r, stderr: %r)"
            % (_excerpt(stdout), _excerpt(stderr)),
        )
    last = objects[-1]
    schema_version_of(last)
    if last.get("type") == "result" and isinstance(last.get("data"), dict):
        data = last["data"]
        status = data.get("status")
        if not isinstance(status, dict):
            status = None
        return status, data
    if "phase" in last:
        return last, None
    raise CliOutputError(
        "hotreload status printed JSON that is neither a status object nor a result record: %r"
        % (_excerpt(json.dumps(last), 200),),
    )


def serving_master(status):
    """The master that serves: the new one while an upgrade is in progress, else the only one."""
    if not isinstance(status, dict):
        return None
    for key in ("new_master", "old_master"):
        master = status.get(key)
        if isinstance(master, dict):
            return master
    return None


def status_facts(status):
    """The facts the status module returns for a status object."""
    phase, printed = normalize_phase(status.get("phase"))
    master = serving_master(status) or {}
    return {
        "phase": phase,
        "reported_phase": printed,
        "pid_file": status.get("pid_file"),
        "old_master": status.get("old_master"),
        "new_master": status.get("new_master"),
        "master_pid": master.get("pid"),
        "workers": list(master.get("workers") or []),
        "executable": master.get("exe"),
        "evidence": list(status.get("evidence") or []),
        "upgrade_in_progress": phase in ("spawned", "drained"),
    }


def failure_message(error, hint, fallback):
    """The module's `msg`: the CLI's own message, then its "what to do" line."""
    message = error or fallback
    if hint:
        message = "%s -- what to do: %s" % (message, hint)
    return message


def _cli_changed(data, default):
    changed = data.get("changed")
    if isinstance(changed, bool):
        return changed
    return default


def _outcome(state, cli_outcome, exit_code, data):
    if cli_outcome == "unchanged":
        return "unchanged"
    if exit_code == 0:
        if state == "upgraded":
            return {"kept-old": "kept_old", "dry-run": "would_upgrade"}.get(cli_outcome, "upgraded")
        return "rolled_back" if state == "rolled_back" else "committed"
    if state != "upgraded" and cli_outcome == "refused" and _steady(data):
        # A step command refused in `steady` found nothing in progress: the host is
        # already where `rolled_back` / `committed` asks it to be.
        return "unchanged"
    mapped = _UPGRADE_OUTCOMES.get(cli_outcome)
    if mapped in FAILED_OUTCOMES:
        return mapped
    # A word this file does not know (or a success word with a failing exit code):
    # the exit code, which is the stable part of the contract, decides.
    return _EXIT_OUTCOMES.get(exit_code, "needs_attention")


def map_result(state, data, rc):
    """Maps one CLI `result` (its data and the process's exit code) to the module's result.

    Returns a dict with changed, failed, outcome, msg, error, hint. ``state`` is the
    module's `state` option (upgraded / rolled_back / committed).
    """
    exit_code = rc if isinstance(rc, int) else data.get("exit_code")
    cli_outcome = data.get("outcome")
    error = data.get("error")
    hint = data.get("hint")
    outcome = _outcome(state, cli_outcome, exit_code, data)
    # A rollback done by `hotreload rollback` is what `state: rolled_back` asked for.
    failed = outcome in FAILED_OUTCOMES and not (state == "rolled_back" and exit_code == 0)
    if outcome == "unchanged":
        changed = False
    elif outcome == "would_upgrade":
        # Check mode reports what would change; the dry run itself changed nothing.
        changed = True
    else:
        default = outcome in ("upgraded", "kept_old", "committed", "needs_attention") or (
            outcome == "rolled_back" and not failed)
        changed = _cli_changed(data, default)
    if failed:
        hint = hint or _DEFAULT_HINTS.get(outcome)
        msg = failure_message(error, hint, "hotreload %s ended with outcome %s (exit %s)"
                              % (data.get("command") or "", cli_outcome, exit_code))
    else:
        msg = OUTCOMES.get(outcome)
    return {
        "changed": bool(changed),
        "failed": bool(failed),
        "outcome": outcome,
        "cli_outcome": cli_outcome,
        "exit_code": exit_code,
        "msg": msg,
        "error": error,
        "hint": hint,
    }


def _steady(data):
    state = data.get("state")
    return isinstance(state, dict) and state.get("phase") == "steady"


def check_mode_step(state, status):
    """Check mode for `rolled_back` / `committed`: what the step would do, from `status`."""
    phase, printed = normalize_phase(status.get("phase"))
    if phase == "steady":
        return {"changed": False, "failed": False, "outcome": "unchanged",
                "msg": "no upgrade in progress: nothing to %s"
                % ("roll back" if state == "rolled_back" else "commit")}
    if phase in ("spawned", "drained") or (phase == "unknown" and state == "rolled_back"
                                          and status.get("old_master")):
        if state == "committed" and phase != "drained":
            return {"changed": False, "failed": True, "outcome": "refused",
                    "msg": "commit needs the phase `drained`, and the server is `%s`: run "
                           "the upgrade with keep_old first, or roll back" % printed}
        outcome = "would_roll_back" if state == "rolled_back" else "would_commit"
        return {"changed": True, "failed": False, "outcome": outcome, "msg": OUTCOMES[outcome]}
    evidence = "; ".join(status.get("evidence") or [])
    return {"changed": False, "failed": True, "outcome": "needs_attention",
            "msg": "the server is in phase `%s` (%s) -- what to do: run `hotreload status "
                   "--pid-file %s` on the host and follow its advice"
                   % (printed, evidence, status.get("pid_file"))}


def steps_of(data):
    """The per-step timings, as `[{step, duration_ms}]`."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    return [s for s in steps if isinstance(s, dict) and "step" in s]


def upgrade_command(params, check_mode):
    """The argv for the module's options (params as AnsibleModule.params)."""
    state = params.get("state") or "upgraded"
    sub = {"upgraded": "upgrade", "rolled_back": "rollback", "committed": "commit"}[state]
    argv = [params.get("hotreload_path") or "hotreload", sub,
            "--pid-file", params["pid_file"], "--json"]
    if params.get("flavor"):
        argv += ["--flavor", params["flavor"]]
    for option in ("spawn_timeout", "drain_timeout", "quit_timeout"):
        if params.get(option):
            argv += ["--" + option.replace("_", "-"), str(params[option])]
    if sub != "upgrade":
        return argv
    for option in ("new_binary", "binary", "swap", "health_url", "health_tcp",
                   "on_drain_timeout"):
        if params.get(option):
            argv += ["--" + option.replace("_", "-"), str(params[option])]
    if params.get("keep_old"):
        argv.append("--keep-old")
    if params.get("skip_config_test"):
        argv.append("--skip-config-test")
    if check_mode:
        argv.append("--dry-run")
    return argv


def status_command(params):
    argv = [params.get("hotreload_path") or "hotreload", "status",
            "--pid-file", params["pid_file"], "--json"]
    if params.get("flavor"):
        argv += ["--flavor", params["flavor"]]
    return argv
