#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hotreload contributors
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Ansible module: a zero-downtime binary upgrade (or its rollback / commit) on one host,
by running the `hotreload` CLI there and reading its JSON Lines."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: upgrade
short_description: Upgrade a running nginx-style server to a new executable with zero downtime
version_added: "0.1.0"
description:
  - Runs the C(hotreload) CLI on the managed host to swap the server's executable, start a new
    master with C(USR2), check it, drain the old workers (C(WINCH)) and retire the old master
    (C(QUIT)); when anything fails after the swap, C(hotreload) rolls back by itself and the
    task fails with hotreload's own message and its "what to do" advice.
  - With I(state=rolled_back) it runs C(hotreload rollback) (old version back), with
    I(state=committed) C(hotreload commit) (finish a I(keep_old) upgrade).
  - Idempotent. When the host already runs the requested build, C(hotreload) reports
    C(unchanged) and the task reports C(changed=false). C(rolled_back) and C(committed) on a
    server with no upgrade in progress are C(unchanged) too.
  - Check mode runs C(hotreload upgrade --dry-run) (preflight and plan, nothing changed) and
    reports what would change; for I(state=rolled_back) and I(state=committed) it reads
    C(hotreload status).
  - Works with the JSON Lines contract of C(hotreload) (schema version 1, and the unversioned
    output of earlier releases); refuses output of a newer major version.
author:
  - hotreload contributors
requirements:
  - the C(hotreload) CLI on the managed host (see I(hotreload_path))
  - Linux (hotreload reads /proc)
attributes:
  check_mode:
    support: full
    description: Runs C(hotreload upgrade --dry-run); nothing on the host changes.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  pid_file:
    description:
      - The server's pid file (nginx, the C(pid) directive).
    type: path
    required: true
  state:
    description:
      - C(upgraded) runs the whole upgrade (C(hotreload upgrade)).
      - C(rolled_back) goes back to the old master of an upgrade in progress (C(hotreload rollback)).
      - C(committed) retires the old master kept by I(keep_old) (C(hotreload commit)).
    type: str
    choices: [upgraded, rolled_back, committed]
    default: upgraded
  new_binary:
    description:
      - The new executable on the managed host. Not needed with I(swap=none).
    type: path
  binary:
    description:
      - The installed executable to replace. Default is what the running master executes.
    type: path
  flavor:
    description:
      - The server's signal map and pid-file naming.
    type: str
    choices: [nginx, unicorn, gunicorn]
    default: nginx
  swap:
    description:
      - How the new executable is put in place; the old one is backed up until the commit.
    type: str
    choices: [rename, copy, symlink, none]
  health_url:
    description:
      - An C(http://) URL that must answer 2xx from a worker of the new master after the spawn.
    type: str
  health_tcp:
    description:
      - An C(ADDR:PORT) that must accept a connection after the spawn.
    type: str
  spawn_timeout:
    description:
      - How long the new master may take to write its pid file and start its workers, as
        C(hotreload) reads durations (C(30s), C(2m), C(1m 30s)).
    type: str
  drain_timeout:
    description:
      - How long the old workers may take to finish their requests.
    type: str
  quit_timeout:
    description:
      - How long a master sent C(QUIT) may take to exit.
    type: str
  on_drain_timeout:
    description:
      - What to do when old workers still run at the drain deadline.
    type: str
    choices: [rollback, terminate]
  keep_old:
    description:
      - Stop after the drain, keeping the old master without workers for an instant rollback;
        finish with I(state=committed) or I(state=rolled_back).
    type: bool
    default: false
  skip_config_test:
    description:
      - Do not run the new executable's configuration test (C(-t)) first.
    type: bool
    default: false
  hotreload_path:
    description:
      - The C(hotreload) CLI on the managed host, a path or a name looked up in C(PATH).
    type: str
    default: hotreload
notes:
  - The events C(hotreload) printed are returned in C(events) when the play runs with C(-v) or more.
seealso:
  - module: hotreload.hotreload.status
"""

EXAMPLES = r"""
- name: Upgrade nginx to the build staged on the host
  hotreload.hotreload.upgrade:
    pid_file: /run/nginx.pid
    new_binary: /var/lib/hotreload/builds/nginx-1.26.2
    health_url: http://127.0.0.1/healthz
  register: upgrade

- name: Upgrade but keep the old master for an instant rollback
  hotreload.hotreload.upgrade:
    pid_file: /run/nginx.pid
    new_binary: /var/lib/hotreload/builds/nginx-1.26.2
    keep_old: true

- name: Go back to the old version
  hotreload.hotreload.upgrade:
    pid_file: /run/nginx.pid
    state: rolled_back

- name: Keep the new version
  hotreload.hotreload.upgrade:
    pid_file: /run/nginx.pid
    state: committed

- name: A unicorn whose new release is already in place
  hotreload.hotreload.upgrade:
    pid_file: /srv/app/shared/pids/unicorn.pid
    flavor: unicorn
    swap: none
"""

RETURN = r"""
outcome:
  description:
    - What happened, one of C(upgraded), C(kept_old), C(committed), C(unchanged),
      C(rolled_back), C(would_upgrade), C(would_roll_back), C(would_commit) (check mode),
      C(refused), C(locked), C(needs_attention) (hotreload could not restore a healthy
      state), C(error) (hotreload could not be run or its output not read).
  returned: always
  type: str
  sample: upgraded
old_pid:
  description: The master before the command.
  returned: when hotreload ran
  type: int
  sample: 3903
new_pid:
  description: The master the command started, if any.
  returned: when hotreload ran
  type: int
  sample: 3928
steps:
  description: Each step hotreload took, with its duration.
  returned: when hotreload ran
  type: list
  elements: dict
  sample: [{"step": "spawn", "duration_ms": 412}]
total_ms:
  description: The whole command's duration as hotreload measured it (upgrade only).
  returned: when hotreload reports it
  type: int
  sample: 565
plan:
  description: What the upgrade does (or would do, in check mode), one sentence a step.
  returned: when hotreload reports it
  type: list
  elements: str
error:
  description: hotreload's message when it failed (naming the pid or path).
  returned: on failure
  type: str
hint:
  description: hotreload's advice on what to do next.
  returned: on failure
  type: str
result:
  description: The CLI's final C(result) record (its C(data)), as printed.
  returned: when hotreload ran
  type: dict
events:
  description: Every other JSON record hotreload printed (steps, checks, signals), in order.
  returned: with verbosity 1 or more (C(-v))
  type: list
  elements: dict
exit_code:
  description:
    - The CLI's exit code (0 ok, 1 rolled back, 2 usage, 3 refused, 4 locked, 5 needs a person).
    - Not called C(rc), so that Ansible does not count a non-zero code as a failure by itself.
  returned: when hotreload ran
  type: int
  sample: 0
cmd:
  description: The command that was run.
  returned: when hotreload ran
  type: list
  elements: str
schema_version:
  description: The JSON Lines schema version hotreload printed (0 for unversioned output).
  returned: when hotreload ran
  type: int
  sample: 1
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hotreload.hotreload.plugins.module_utils.hotreload_cli import (
    CliOutputError,
    check_mode_step,
    parse_json_lines,
    parse_status,
    map_result,
    status_command,
    steps_of,
    upgrade_command,
)

ARGUMENT_SPEC = dict(
    pid_file=dict(type="path", required=True),
    state=dict(type="str", default="upgraded", choices=["upgraded", "rolled_back", "committed"]),
    new_binary=dict(type="path"),
    binary=dict(type="path"),
    flavor=dict(type="str", default="nginx", choices=["nginx", "unicorn", "gunicorn"]),
    swap=dict(type="str", choices=["rename", "copy", "symlink", "none"]),
    health_url=dict(type="str"),
    health_tcp=dict(type="str"),
    spawn_timeout=dict(type="str"),
    drain_timeout=dict(type="str"),
    quit_timeout=dict(type="str"),
    on_drain_timeout=dict(type="str", choices=["rollback", "terminate"]),
    keep_old=dict(type="bool", default=False),
    skip_config_test=dict(type="bool", default=False),
    hotreload_path=dict(type="str", default="hotreload"),
)


def find_cli(module):
    """The CLI's absolute path, or a failure that says how to get it there."""
    path = module.params["hotreload_path"]
    if os.sep in path:
        found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        found = module.get_bin_path(path)
    if not found:
        module.fail_json(
            msg="the hotreload CLI was not found at %r on this host -- what to do: install it "
                "(the rolling_upgrade role does with hotreload_install_cli: true) or set "
                "hotreload_path" % path,
            outcome="error",
            changed=False,
        )
    return found


def run_step_check(module, cli):
    """Check mode of rolled_back / committed: what `status` says the step would do."""
    params = dict(module.params, hotreload_path=cli)
    cmd = status_command(params)
    rc, out, err = module.run_command(cmd)
    try:
        status, data = parse_status(out, err)
    except CliOutputError as e:
        module.fail_json(msg="%s -- what to do: %s" % (e.message, e.hint), outcome="error",
                         changed=False, cmd=cmd, exit_code=rc, stderr=err)
    if status is None:
        data = data or {}
        module.fail_json(msg="%s -- what to do: %s" % (data.get("error"), data.get("hint")),
                         outcome="needs_attention", changed=False, cmd=cmd, exit_code=rc, result=data)
    verdict = check_mode_step(module.params["state"], status)
    verdict["status"] = status
    verdict["cmd"] = cmd
    if verdict.pop("failed"):
        module.fail_json(**verdict)
    module.exit_json(**verdict)


def run(module):
    cli = find_cli(module)
    state = module.params["state"]
    if module.check_mode and state != "upgraded":
        run_step_check(module, cli)
        return
    if state == "upgraded" and not module.params["new_binary"] and module.params["swap"] != "none":
        module.fail_json(msg="new_binary is required unless swap is none", outcome="error",
                         changed=False)
    params = dict(module.params, hotreload_path=cli)
    cmd = upgrade_command(params, module.check_mode)
    rc, out, err = module.run_command(cmd)
    try:
        events, data, version = parse_json_lines(out, err)
    except CliOutputError as e:
        module.fail_json(msg="%s -- what to do: %s" % (e.message, e.hint), outcome="error",
                         changed=False, cmd=cmd, exit_code=rc, stdout=out, stderr=err)
    mapped = map_result(state, data, rc)
    ret = dict(
        changed=mapped["changed"],
        outcome=mapped["outcome"],
        msg=mapped["msg"],
        old_pid=data.get("old_pid"),
        new_pid=data.get("new_pid"),
        steps=steps_of(data),
        result=data,
        cmd=cmd,
        exit_code=rc,
        schema_version=version,
    )
    for key in ("total_ms", "plan", "preflight"):
        if key in data:
            ret[key] = data[key]
    if mapped["error"]:
        ret["error"] = mapped["error"]
    if mapped["hint"]:
        ret["hint"] = mapped["hint"]
    if module._verbosity >= 1:
        ret["events"] = events
    if mapped["failed"]:
        ret["stderr"] = err
        module.fail_json(**ret)
    module.exit_json(**ret)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        run(module)
    except Exception as e:  # never a traceback in the play's output: say what broke
        module.fail_json(
            msg="hotreload.hotreload.upgrade failed unexpectedly: %s: %s -- what to do: report "
                "this with the exception below; run `hotreload status --pid-file %s` on the "
                "host to see the server's state" % (type(e).__name__, e, module.params["pid_file"]),
            outcome="error",
            changed=False,
            exception=traceback.format_exc(),
        )


if __name__ == "__main__":
    main()
