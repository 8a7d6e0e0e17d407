# Unit tests of the CLI-output parsing and the mapping from hotreload's outcomes and exit
# codes to Ansible results (plugins/module_utils/hotreload_cli.py). No Ansible needed.
import json

import pytest

from ansible_collections.hotreload.hotreload.plugins.module_utils.hotreload_cli import (
    CliOutputError,
    check_mode_step,
    map_result,
    parse_json_lines,
    parse_status,
    status_command,
    status_facts,
    upgrade_command,
)

TIME = "2026-12-01T10:00:00.123Z"


def line(kind, data, version=1):
    record = {"type": kind, "data": data}
    if version is not None:
        record = dict(schema_version=version, type=kind, time=TIME, data=data)
    return json.dumps(record)


def result(outcome, exit_code, version=1, **extra):
    data = dict(command="upgrade", outcome=outcome, exit_code=exit_code, old_pid=100,
                new_pid=200, steps=[{"step": "spawn", "duration_ms": 12}], error=None,
                hint=None, state=None)
    if version == 1:
        data["changed"] = extra.pop("changed", outcome in ("committed", "kept-old"))
    data.update(extra)
    return line("result", data, version)


def run(stdout, rc, state="upgraded"):
    events, data, version = parse_json_lines(stdout)
    return map_result(state, data, rc), events, version


# --- parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, None])
def test_a_committed_upgrade_is_upgraded_in_both_schema_versions(version):
    out = "\n".join([line("step_started", {"step": "spawn"}, version),
                     line("signalled", {"pid": 100, "signal": "SIGUSR2", "role": "old-master"},
                          version),
                     result("committed", 0, version)]) + "\n"
    mapped, events, seen = run(out, 0)
    assert mapped["outcome"] == "upgraded"
    assert mapped["changed"] is True
    assert mapped["failed"] is False
    assert [e["type"] for e in events] == ["step_started", "signalled"]
    assert seen == (version or 0)


def test_an_unknown_major_version_is_refused_clearly():
    out = line("result", {"outcome": "committed", "exit_code": 0}, version=2)
    with pytest.raises(CliOutputError) as err:
        parse_json_lines(out)
    assert "schema version 2" in err.value.message
    assert "upgrade the hotreload.hotreload collection" in err.value.hint


def test_a_minor_revision_string_is_read():
    out = line("result", {"outcome": "committed", "exit_code": 0}, version="1.4")
    _, data, version = parse_json_lines(out)
    assert version == 1 and data["outcome"] == "committed"


@pytest.mark.parametrize("bad", ["x", -1, True, None])
def test_an_unreadable_schema_version_is_an_error(bad):
    out = json.dumps({"schema_version": bad, "type": "result", "data": {}})
    with pytest.raises(CliOutputError):
        parse_json_lines(out)


@pytest.mark.parametrize("stdout", ["", "\n\n", "Segmentation fault\n", "[1, 2]\n",
                                    "hotreload 0.1.0\n"])
def test_garbage_is_an_error_naming_what_was_printed(stdout):
    with pytest.raises(CliOutputError) as err:
        parse_json_lines(stdout, "boom on stderr")
    assert "no JSON" in err.value.message
    assert "boom on stderr" in err.value.message


def test_output_cut_before_the_result_is_an_error():
    out = line("step_started", {"step": "spawn"}) + "\n" + line("waiting", {"what": "x"})
    with pytest.raises(CliOutputError) as err:
        parse_json_lines(out)
    assert "without a result record" in err.value.message
    assert "hotreload status" in err.value.hint


def test_stray_lines_do_not_hide_the_result():
    out = "warning: something\n" + line("step_started", {"step": "lock"}) + "\n{oops\n" + \
        result("committed", 0) + "\n"
    mapped, events, _ = run(out, 0)
    assert mapped["outcome"] == "upgraded"
    assert len(events) == 1


# --- outcome mapping -------------------------------------------------------------------

@pytest.mark.parametrize("outcome,rc,expected,failed", [
    ("committed", 0, "upgraded", False),
    ("kept-old", 0, "kept_old", False),
    ("unchanged", 0, "unchanged", False),
    ("dry-run", 0, "would_upgrade", False),
    ("rolled-back", 1, "rolled_back", True),
    ("refused", 3, "refused", True),
    ("locked", 4, "locked", True),
    ("unrecovered", 5, "needs_attention", True),
    ("interrupted", 5, "needs_attention", True),
    ("failed", 5, "needs_attention", True),
    ("cancelled", 5, "needs_attention", True),
])
def test_cli_outcomes_map_to_module_outcomes(outcome, rc, expected, failed):
    mapped, _, _ = run(result(outcome, rc), rc)
    assert mapped["outcome"] == expected
    assert mapped["failed"] is failed


@pytest.mark.parametrize("rc,expected", [(0, "upgraded"), (1, "rolled_back"), (2, "error"),
                                         (3, "refused"), (4, "locked"), (5, "needs_attention"),
                                         (-9, "needs_attention"), (77, "needs_attention")])
def test_an_unknown_outcome_word_falls_back_to_the_exit_code(rc, expected):
    mapped, _, _ = run(result("brand-new-word", rc), rc)
    assert mapped["outcome"] == expected
    assert mapped["failed"] is (rc != 0)


def test_a_failing_exit_code_beats_a_success_word():
    mapped, _, _ = run(result("committed", 1), 1)
    assert mapped["outcome"] == "rolled_back" and mapped["failed"]


def test_unchanged_is_never_changed_even_if_the_cli_says_so():
    mapped, _, _ = run(result("unchanged", 0, changed=True), 0)
    assert mapped["changed"] is False and not mapped["failed"]


def test_the_cli_changed_flag_is_reported():
    mapped, _, _ = run(result("rolled-back", 1, changed=True), 1)
    assert mapped["changed"] is True
    mapped, _, _ = run(result("rolled-back", 1, changed=False), 1)
    assert mapped["changed"] is False


def test_without_a_changed_flag_v0_output_derives_it():
    mapped, _, _ = run(result("committed", 0, version=None), 0)
    assert mapped["changed"] is True
    mapped, _, _ = run(result("refused", 3, version=None), 3)
    assert mapped["changed"] is False


def test_a_failure_carries_the_cli_message_and_its_what_to_do_line():
    out = result("rolled-back", 1, error="the new master of master 100 exited",
                 hint="the old version is serving again (master 100)")
    mapped, _, _ = run(out, 1)
    assert mapped["msg"] == ("the new master of master 100 exited -- what to do: "
                             "the old version is serving again (master 100)")
    assert mapped["error"] == "the new master of master 100 exited"
    assert mapped["hint"] == "the old version is serving again (master 100)"


def test_a_failure_without_a_hint_gets_a_default_one():
    mapped, _, _ = run(result("locked", 4, error="held by pid 7"), 4)
    assert mapped["msg"].startswith("held by pid 7 -- what to do: another hotreload")


def test_the_exit_code_of_the_result_is_used_when_the_process_gave_none():
    mapped, _, _ = run(result("refused", 3), None)
    assert mapped["exit_code"] == 3 and mapped["outcome"] == "refused"


# --- rolled_back / committed -------------------------------------------------------------

def step_result(command, outcome, rc, phase=None):
    state = {"phase": phase, "evidence": []} if phase else None
    return line("result", dict(command=command, outcome=outcome, exit_code=rc, old_pid=1,
                               new_pid=2, steps=[], error="e", hint="h", state=state,
                               changed=outcome == "ok"))


def test_a_rollback_that_ran_is_rolled_back_and_not_a_failure():
    mapped, _, _ = run(step_result("rollback", "ok", 0, "steady"), 0, state="rolled_back")
    assert mapped == dict(mapped, outcome="rolled_back", failed=False, changed=True)


def test_a_commit_that_ran_is_committed():
    mapped, _, _ = run(step_result("commit", "ok", 0, "steady"), 0, state="committed")
    assert mapped["outcome"] == "committed" and mapped["changed"] and not mapped["failed"]


@pytest.mark.parametrize("state", ["rolled_back", "committed"])
def test_a_step_refused_in_steady_is_unchanged(state):
    mapped, _, _ = run(step_result("rollback", "refused", 3, "steady"), 3, state=state)
    assert mapped["outcome"] == "unchanged"
    assert not mapped["failed"] and not mapped["changed"]


def test_a_step_refused_in_another_phase_is_refused():
    mapped, _, _ = run(step_result("commit", "refused", 3, "spawned"), 3, state="committed")
    assert mapped["outcome"] == "refused" and mapped["failed"]


def test_a_rollback_that_could_not_finish_needs_attention():
    mapped, _, _ = run(step_result("rollback", "unrecovered", 5), 5, state="rolled_back")
    assert mapped["outcome"] == "needs_attention" and mapped["failed"]


@pytest.mark.parametrize("state,phase,outcome,changed,failed", [
    ("rolled_back", "steady", "unchanged", False, False),
    ("rolled_back", "spawned", "would_roll_back", True, False),
    ("rolled_back", "drained", "would_roll_back", True, False),
    ("committed", "drained", "would_commit", True, False),
    ("committed", "spawned", "refused", False, True),
    ("committed", "steady", "unchanged", False, False),
    ("committed", "unknown", "needs_attention", False, True),
    ("committed", "resuming", "needs_attention", False, True),
])
def test_check_mode_of_steps_reads_the_phase(state, phase, outcome, changed, failed):
    verdict = check_mode_step(state, {"phase": phase, "pid_file": "/run/x.pid",
                                      "evidence": ["e1"]})
    assert (verdict["outcome"], verdict["changed"], verdict["failed"]) == \
        (outcome, changed, failed)


# --- status ----------------------------------------------------------------------------

MASTER_OLD = {"pid": 100, "exe": "/usr/sbin/nginx", "workers": [101, 102]}
MASTER_NEW = {"pid": 200, "exe": "/usr/sbin/nginx", "workers": [201]}


def test_status_v1_is_the_result_envelope():
    status = {"phase": "spawned", "pid_file": "/run/n.pid", "old_master": MASTER_OLD,
              "new_master": MASTER_NEW, "evidence": ["a"]}
    out = line("result", {"command": "status", "outcome": "ok", "exit_code": 0,
                          "changed": False, "status": status, "error": None, "hint": None})
    parsed, data = parse_status(out)
    facts = status_facts(parsed)
    assert facts["phase"] == "spawned" and facts["upgrade_in_progress"]
    assert facts["master_pid"] == 200 and facts["workers"] == [201]
    assert data["command"] == "status"


def test_status_v0_is_the_bare_object():
    out = json.dumps({"phase": "steady", "pid_file": "/run/n.pid", "old_master": MASTER_OLD,
                      "new_master": None, "evidence": []})
    parsed, data = parse_status(out)
    facts = status_facts(parsed)
    assert data is None
    assert facts["phase"] == "steady" and facts["master_pid"] == 100
    assert facts["executable"] == "/usr/sbin/nginx" and not facts["upgrade_in_progress"]


def test_status_with_an_unreadable_system_has_no_status_object():
    out = line("result", {"command": "status", "outcome": "refused", "exit_code": 3,
                          "error": "cannot read /proc", "hint": "h"}, version=None)
    parsed, data = parse_status(out)
    assert parsed is None and data["error"] == "cannot read /proc"


def test_an_unrecognised_phase_is_unknown_but_returned_as_printed():
    facts = status_facts({"phase": "resuming", "old_master": None, "new_master": None})
    assert facts["phase"] == "unknown" and facts["reported_phase"] == "resuming"
    assert facts["master_pid"] is None and facts["workers"] == []


def test_status_of_a_newer_major_version_is_refused():
    out = json.dumps({"schema_version": 9, "type": "result", "data": {"status": {}}})
    with pytest.raises(CliOutputError):
        parse_status(out)


def test_status_garbage_is_an_error():
    with pytest.raises(CliOutputError):
        parse_status("not json")
    with pytest.raises(CliOutputError):
        parse_status(json.dumps({"something": "else"}))


# --- command lines ---------------------------------------------------------------------

PARAMS = dict(pid_file="/run/n.pid", state="upgraded", new_binary="/b/nginx", binary=None,
              flavor="nginx", swap="copy", health_url="http://127.0.0.1/", health_tcp=None,
              spawn_timeout="10s", drain_timeout=None, quit_timeout=None,
              on_drain_timeout="terminate", keep_old=True, skip_config_test=False,
              hotreload_path="/usr/local/bin/hotreload")


def test_the_upgrade_command_mirrors_the_options():
    argv = upgrade_command(PARAMS, check_mode=False)
    assert argv[:5] == ["/usr/local/bin/hotreload", "upgrade", "--pid-file", "/run/n.pid",
                        "--json"]
    joined = " ".join(argv)
    for part in ["--flavor nginx", "--spawn-timeout 10s", "--new-binary /b/nginx",
                 "--swap copy", "--health-url http://127.0.0.1/",
                 "--on-drain-timeout terminate", "--keep-old"]:
        assert part in joined
    assert "--dry-run" not in argv and "--skip-config-test" not in argv
    assert "--binary" not in argv and "--drain-timeout" not in argv


def test_check_mode_is_a_dry_run():
    assert upgrade_command(PARAMS, check_mode=True)[-1] == "--dry-run"


@pytest.mark.parametrize("state,sub", [("rolled_back", "rollback"), ("committed", "commit")])
def test_step_commands_take_only_their_options(state, sub):
    argv = upgrade_command(dict(PARAMS, state=state), check_mode=False)
    assert argv[1] == sub
    assert "--new-binary" not in argv and "--keep-old" not in argv
    assert "--spawn-timeout" in argv


def test_the_status_command():
    assert status_command(dict(PARAMS, flavor="gunicorn")) == [
        "/usr/local/bin/hotreload", "status", "--pid-file", "/run/n.pid", "--json",
        "--flavor", "gunicorn"]
