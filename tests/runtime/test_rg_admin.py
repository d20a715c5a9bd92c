"""RG.* management replies: configuration, requirements, memory, cluster, INFO MODULES, and the script globals."""

from __future__ import annotations

import redis

from tests.runtime.conftest import raw_call
from tests.runtime.gears_helpers import pairs, pyexecute, rg

__all__ = ["rg"]


def test_configget_and_configset(rg: redis.Redis) -> None:
    assert rg.execute_command("RG.CONFIGGET", "MaxExecutions") == [1000]
    reply = raw_call(rg, "RG.CONFIGGET", "MaxExecutions", "nosuchkey")
    assert reply[0] == 1000 and str(reply[1]) == "(error) Unsupported config parameter: nosuchkey"
    assert raw_call(rg, "RG.CONFIGSET", "myKey", "myValue") == [b"OK - value was saved in extra config dictionary"]
    assert rg.execute_command("RG.CONFIGGET", "myKey") == [b"myValue"]
    assert raw_call(rg, "RG.CONFIGSET", "MaxExecutionsPerRegistration", "50") == [b"OK"]
    assert rg.execute_command("RG.CONFIGGET", "MaxExecutionsPerRegistration") == [50]
    assert (
        str(raw_call(rg, "RG.CONFIGSET", "ExecutionThreads", "2")[0])
        == "(error) Failed setting config value ExecutionThreads"
    )
    code = (
        "GB('ShardsIDReader').map(lambda _: (configGet('myKey'), gearsConfigGet('missing', 'dflt'), hashtag())).run()"
    )
    assert pyexecute(rg, code) == [[b"('myValue', 'dflt', '06S')"], []]


def test_pydumpreqs_lists_the_requirements_of_the_sessions(rg: redis.Redis) -> None:
    pyexecute(rg, "GB('CommandReader').register(trigger='t')", "ID", "withreqs", "REQUIREMENTS", "numpy")
    (entry,) = rg.execute_command("RG.PYDUMPREQS")
    info = pairs(entry)
    assert list(info) == [
        "GearReqVersion",
        "Name",
        "IsDownloaded",
        "IsInstalled",
        "CompiledOs",
        "Wheels",
        "Path",
        "RefCount",
        "IsInReqDictionary",
    ]
    assert info["Name"] == b"numpy" and info["IsInstalled"] == b"yes" and info["RefCount"] == 1
    (session,) = rg.execute_command("RG.PYDUMPSESSIONS")
    assert pairs(session)["requirements"] == [b"numpy"]


def test_pystats_cluster_commands_and_info_modules(rg: redis.Redis) -> None:
    stats = pairs(rg.execute_command("RG.PYSTATS"))
    assert list(stats) == ["TotalAllocated", "PeakAllocated", "CurrAllocated"]
    assert all(isinstance(v, int) and v > 0 for v in stats.values())
    assert rg.execute_command("RG.INFOCLUSTER") == b"no cluster mode"
    assert rg.execute_command("RG.REFRESHCLUSTER") == b"OK"
    assert rg.execute_command("RG.NETWORKTEST") == b"OK"
    assert rg.execute_command("RG.DUMPPLUGINS") == [[b"GearsPythonPlugin", 10000]]
    text = raw_call(rg, "INFO", "MODULES").decode()
    assert "module:name=rg," in text and "module:name=ai," in text
    assert "rg_nregistrations:0" in text
    # INFO <module> answers that module's sections, with RedisGears' memory and count fields.
    own = raw_call(rg, "INFO", "rg").decode()
    for field in ("rg_TotalAllocated", "rg_PeakAllocated", "rg_CurrAllocated", "rg_nexecutions", "rg_nregistrations"):
        assert f"\r\n{field}:" in own
    assert "module:name=" not in own and "ai_" not in own


def test_the_redisgears_module_log_and_atomic(rg: redis.Redis) -> None:
    code = (
        "import redisgears\n"
        "def step(_):\n"
        "    with atomic():\n"
        "        redisgears.executeCommand('SET', 'via-module', 'yes')\n"
        "    log('hello from a gears step', level='warning')\n"
        "    return redisgears.getMyHashTag()\n"
        "GB('ShardsIDReader').map(step).run()"
    )
    assert pyexecute(rg, code) == [[b"06S"], []]
    assert rg.get("via-module") == b"yes"
    results, errors = pyexecute(rg, "GB('ShardsIDReader').map(lambda _: log('x', level='loud')).run()")
    assert results == [] and errors == [b"Log level must be a sting (debug/verbose/notice/warning)"]
