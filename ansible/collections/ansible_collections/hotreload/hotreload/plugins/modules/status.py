#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hotreload contributors
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Ansible module: the upgrade phase of a running nginx-style server, as facts, from
`hotreload status --json` on the managed host. Changes nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: status
short_description: Report the masters, workers, executable and upgrade phase of a server
version_added: "0.1.0"
description:
  - Runs C(hotreload status --json) on the managed host and returns what it found, also as
    the fact C(hotreload_status).
  - Never fails for a phase hotreload can name (C(steady), C(spawned), C(drained), C(unknown));
    a phase string this collection does not know is returned as C(unknown), with the printed
    string in C(reported_phase). It fails only when hotreload cannot be run, cannot read the
    system at all, or prints output it cannot parse.
author:
  - hotreload contributors
requirements:
  - the C(hotreload) CLI on the managed host
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
options:
  pid_file:
    description: The server's pid file (nginx, the C(pid) directive).
    type: path
    required: true
  flavor:
    description: The server's signal map and pid-file naming.
    type: str
    choices: [nginx, unicorn, gunicorn]
    default: nginx
  hotreload_path:
    description: The C(hotreload) CLI on the managed host, a path or a name looked up in C(PATH).
    type: str
    default: hotreload
seealso:
  - module: hotreload.hotreload.upgrade
"""

EXAMPLES = r"""
- name: Where is the upgrade?
  hotreload.hotreload.status:
    pid_file: /run/nginx.pid
  register: st

- name: Stop unless the server is steady
  ansible.builtin.assert:
    that: st.phase == 'steady'
    fail_msg: "{{ st.evidence | join('; ') }}"
"""

RETURN = r"""
phase:
  description: C(steady), C(spawned), C(drained) or C(unknown) (also for a phase this collection does not know).
  returned: always
  type: str
  sample: steady
reported_phase:
  description: The phase exactly as hotreload printed it.
  returned: always
  type: str
  sample: steady
upgrade_in_progress:
  description: Whether the phase is C(spawned) or C(drained).
  returned: always
  type: bool
master_pid:
  description: The master that serves (the new one while an upgrade is in progress).
  returned: always
  type: int
  sample: 3928
workers:
  description: The serving master's worker pids.
  returned: always
  type: list
  elements: int
executable:
  description: What the serving master executes.
  returned: always
  type: str
  sample: /usr/sbin/nginx
old_master:
  description: The old master (in C(steady), the only one) with C(pid), C(exe), C(title), C(start_time), C(started_at), C(workers).
  returned: always
  type: dict
new_master:
  description: The new master while an upgrade is in progress.
  returned: always
  type: dict
evidence:
  description: How hotreload established the phase.
  returned: always
  type: list
  elements: str
exit_code:
  description:
    - The CLI's exit code (0 ok, 1 rolled back, 2 usage, 3 refused, 4 locked, 5 needs a person).
    - Not called C(rc), so that Ansible does not count a non-zero code as a failure by itself.
  returned: when hotreload ran
  type: int
  sample: 0
pid_file:
  description: The pid file read.
  returned: always
  type: str
ansible_facts:
  description: The same values under C(hotreload_status).
  returned: always
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hotreload.hotreload.plugins.module_utils.hotreload_cli import (
    CliOutputError,
    parse_status,
    status_command,
    status_facts,
)

ARGUMENT_SPEC = dict(
    pid_file=dict(type="path", required=True),
    flavor=dict(type="str", default="nginx", choices=["nginx", "unicorn", "gunicorn"]),
    hotreload_path=dict(type="str", default="hotreload"),
)


def run(module):
    cmd = status_command(module.params)
    cli = module.params["hotreload_path"]
    if "/" not in cli and not module.get_bin_path(cli):
        module.fail_json(msg="the hotreload CLI %r is not in PATH on this host -- what to do: "
                             "install it or set hotreload_path" % cli)
    try:
        rc, out, err = module.run_command(cmd)
    except OSError as e:
        module.fail_json(msg="could not run %s: %s -- what to do: install the hotreload CLI or "
                             "set hotreload_path" % (cli, e))
    try:
        status, data = parse_status(out, err)
    except CliOutputError as e:
        module.fail_json(msg="%s -- what to do: %s" % (e.message, e.hint), cmd=cmd, exit_code=rc,
                         stdout=out, stderr=err)
    if status is None:
        data = data or {}
        module.fail_json(msg="%s -- what to do: %s" % (data.get("error"), data.get("hint")),
                         cmd=cmd, exit_code=rc, result=data)
    facts = status_facts(status)
    module.exit_json(changed=False, cmd=cmd, exit_code=rc, ansible_facts={"hotreload_status": facts},
                     **facts)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        run(module)
    except Exception as e:  # never a traceback in the play's output
        module.fail_json(msg="hotreload.hotreload.status failed unexpectedly: %s: %s"
                             % (type(e).__name__, e), exception=traceback.format_exc())


if __name__ == "__main__":
    main()
