# Runs the upgrade and status modules as Ansible runs them (a Python process reading its
# arguments from a JSON file) against a stand-in `hotreload` script with canned output:
# failures carry hotreload's message, and nothing ever ends in a Python traceback.
import json
import os
import stat
import subprocess
import sys

import pytest

pytest.importorskip("ansible")

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir, os.pardir, os.pardir))
COLLECTIONS_ROOT = os.path.abspath(os.path.join(COLLECTION, os.pardir, os.pardir, os.pardir))


def fake_cli(tmp_path, stdout, code):
    out = tmp_path / "out.txt"
    out.write_text(stdout)
    script = tmp_path / "hotreload"
    script.write_text("#!/bin/sh\necho \"$@\" > %s/args\ncat %s\necho 'hotreload: on stderr' >&2\n"
                      "exit %d\n" % (tmp_path, out, code))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def run_module(tmp_path, name, args, check_mode=False, verbosity=0):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_verbosity=verbosity,
                _ansible_tmpdir=str(tmp_path), _ansible_remote_tmp=str(tmp_path),
                _ansible_keep_remote_files=False)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, os.path.join(COLLECTION, "plugins", "modules", name + ".py"),
         str(args_file)], capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def record(kind, data):
    return json.dumps({"schema_version": 1, "type": kind, "time": "2026-12-01T10:00:00Z",
                       "data": data})


def result(outcome, code, **extra):
    data = dict(command="upgrade", outcome=outcome, exit_code=code, changed=False,
                old_pid=100, new_pid=None, steps=[{"step": "spawn", "duration_ms": 5}],
                error=None, hint=None, state=None)
    data.update(extra)
    return record("result", data)


def test_a_rollback_fails_with_the_cli_message_and_hint(tmp_path):
    cli = fake_cli(tmp_path, "\n".join([
        record("step_started", {"step": "spawn"}),
        result("rolled-back", 1, error="the new master of master 100 exited",
               hint="the old version is serving again (master 100)")]) + "\n", 1)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=cli))
    assert res["failed"] is True
    assert res["outcome"] == "rolled_back"
    assert res["msg"] == ("the new master of master 100 exited -- what to do: "
                          "the old version is serving again (master 100)")
    assert res["old_pid"] == 100 and res["steps"] == [{"step": "spawn", "duration_ms": 5}]
    assert "events" not in res


def test_unchanged_is_ok_and_not_changed(tmp_path):
    cli = fake_cli(tmp_path, result("unchanged", 0) + "\n", 0)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=cli))
    assert not res.get("failed") and res["changed"] is False
    assert res["outcome"] == "unchanged" and res["exit_code"] == 0


def test_events_are_returned_with_verbosity(tmp_path):
    cli = fake_cli(tmp_path, record("step_started", {"step": "spawn"}) + "\n" +
                   result("committed", 0, changed=True, total_ms=40) + "\n", 0)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=cli), verbosity=1)
    assert res["changed"] is True and res["outcome"] == "upgraded"
    assert [e["type"] for e in res["events"]] == ["step_started"]
    assert res["total_ms"] == 40


def test_check_mode_runs_a_dry_run(tmp_path):
    cli = fake_cli(tmp_path, result("dry-run", 0, plan=["send SIGUSR2"]) + "\n", 0)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=cli), check_mode=True)
    assert res["changed"] is True and res["outcome"] == "would_upgrade"
    assert res["plan"] == ["send SIGUSR2"]
    assert "--dry-run" in (tmp_path / "args").read_text()


def test_a_missing_cli_fails_saying_so(tmp_path):
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=str(tmp_path / "nope")))
    assert res["failed"] and res["outcome"] == "error"
    assert "not found" in res["msg"] and "hotreload_path" in res["msg"]
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path="no-such-hotreload-cli"))
    assert res["failed"] and "not found" in res["msg"]


@pytest.mark.parametrize("garbage", ["", "Segmentation fault\n", "{\"type\": \"step_started\"}\n"])
def test_garbage_fails_cleanly(tmp_path, garbage):
    cli = fake_cli(tmp_path, garbage, 139)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=cli))
    assert res["failed"] and res["outcome"] == "error"
    assert "what to do" in res["msg"]


def test_a_newer_schema_fails_cleanly(tmp_path):
    cli = fake_cli(tmp_path, json.dumps({"schema_version": 2, "type": "result",
                                         "data": {"outcome": "committed"}}) + "\n", 0)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", new_binary="/b",
                                               hotreload_path=cli))
    assert res["failed"] and "schema version 2" in res["msg"]


def test_status_of_an_unknown_phase_does_not_fail(tmp_path):
    cli = fake_cli(tmp_path, json.dumps({"phase": "unknown", "pid_file": "/run/x.pid",
                                         "old_master": None, "new_master": None,
                                         "evidence": ["pid file is empty"]}) + "\n", 3)
    res = run_module(tmp_path, "status", dict(pid_file="/run/x.pid", hotreload_path=cli))
    assert not res.get("failed"), res
    assert res["phase"] == "unknown" and res["evidence"] == ["pid file is empty"]
    assert res["ansible_facts"]["hotreload_status"]["phase"] == "unknown"


def test_status_v1_steady(tmp_path):
    status = {"phase": "steady", "pid_file": "/run/x.pid", "new_master": None,
              "old_master": {"pid": 5, "exe": "/usr/sbin/nginx", "workers": [6, 7]},
              "evidence": []}
    cli = fake_cli(tmp_path, record("result", {"command": "status", "outcome": "ok",
                                               "exit_code": 0, "changed": False,
                                               "status": status, "error": None,
                                               "hint": None}) + "\n", 0)
    res = run_module(tmp_path, "status", dict(pid_file="/run/x.pid", hotreload_path=cli))
    assert res["phase"] == "steady" and res["master_pid"] == 5 and res["workers"] == [6, 7]
    assert res["changed"] is False


def test_status_fails_when_the_system_cannot_be_read(tmp_path):
    cli = fake_cli(tmp_path, json.dumps({"type": "result", "data": {
        "command": "status", "outcome": "refused", "exit_code": 3,
        "error": "cannot read /proc", "hint": "mount /proc"}}) + "\n", 3)
    res = run_module(tmp_path, "status", dict(pid_file="/run/x.pid", hotreload_path=cli))
    assert res["failed"] and res["msg"] == "cannot read /proc -- what to do: mount /proc"


# --- documentation against the argument spec (what ansible-test's validate-modules checks
# first; ansible-test itself cannot build its virtualenv offline) --------------------------

def load_module(name):
    import importlib.util
    sys.path.insert(0, COLLECTIONS_ROOT)
    spec = importlib.util.spec_from_file_location(
        "hotreload_module_" + name, os.path.join(COLLECTION, "plugins", "modules", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["upgrade", "status"])
def test_documentation_matches_the_argument_spec(name):
    import yaml
    module = load_module(name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == name
    yaml.safe_load(module.EXAMPLES)
    returns = yaml.safe_load(module.RETURN)
    assert "changed" not in returns or returns["changed"]["type"] == "bool"
    documented = doc["options"]
    spec = module.ARGUMENT_SPEC
    assert sorted(documented) == sorted(spec)
    for option, rules in spec.items():
        docs = documented[option]
        assert docs["type"] == rules["type"], option
        assert docs.get("required", False) == rules.get("required", False), option
        assert docs.get("default") == rules.get("default"), option
        assert docs.get("choices") == rules.get("choices"), option
        assert docs.get("description"), option


def test_every_module_outcome_is_documented():
    from ansible_collections.hotreload.hotreload.plugins.module_utils.hotreload_cli import OUTCOMES
    import yaml
    text = " ".join(yaml.safe_load(load_module("upgrade").RETURN)["outcome"]["description"])
    for outcome in OUTCOMES:
        assert "C(%s)" % outcome in text, outcome


@pytest.mark.parametrize("phase,outcome,changed", [("drained", "would_roll_back", True),
                                                   ("steady", "unchanged", False)])
def test_check_mode_of_a_rollback_reads_the_status(tmp_path, phase, outcome, changed):
    status = {"phase": phase, "pid_file": "/run/x.pid", "new_master": None,
              "old_master": {"pid": 5, "exe": "/usr/sbin/nginx", "workers": []},
              "evidence": []}
    cli = fake_cli(tmp_path, record("result", {"command": "status", "outcome": "ok",
                                               "exit_code": 0, "changed": False,
                                               "status": status}) + "\n", 0)
    res = run_module(tmp_path, "upgrade", dict(pid_file="/run/x.pid", state="rolled_back",
                                               hotreload_path=cli), check_mode=True)
    assert not res.get("failed"), res
    assert res["outcome"] == outcome and res["changed"] is changed
    assert (tmp_path / "args").read_text().split()[0] == "status"
