"""Named scripts against a real Redis: the store, resolving at submit, and real runs by a worker."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from jobbalancer import Client, Status
from jobbalancer.balancer import Balancer
from jobbalancer.errors import CorruptRecord
from jobbalancer.scripts_store import InvalidScript, NoSuchScript, Param, ScriptStore
from jobbalancer.worker import Worker

# Each body prints its arguments and the JB_PARAM_ variables, so the output shows both ways in.
BODIES = {
    "sh": 'echo "args: $1|$2"; echo "env: $JB_PARAM_WHO|$JB_PARAM_TIMES"; echo "zero: $0"',
    "bash": 'args=("$@"); echo "args: ${args[0]}|${args[1]}"; echo "env: ${JB_PARAM_WHO}|${JB_PARAM_TIMES}"',
    "python": (
        "import os, sys\n"
        "print('args: ' + '|'.join(sys.argv[1:]))\n"
        "print('env: ' + os.environ['JB_PARAM_WHO'] + '|' + os.environ['JB_PARAM_TIMES'])\n"
    ),
    "node": (
        "console.log('args: ' + process.argv.slice(1).join('|'));\n"
        "console.log('env: ' + process.env.JB_PARAM_WHO + '|' + process.env.JB_PARAM_TIMES);\n"
    ),
}
PARAMS = [{"name": "who", "required": True, "description": "whom to greet"}, {"name": "times", "default": "3"}]


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[Client]:
    the_client = Client(redis_url, prefix)
    yield the_client
    the_client.close()


@contextmanager
def running(redis_url: str, prefix: str) -> Iterator[None]:
    """One balancer and one worker, in threads of this process."""
    balancer = Balancer(redis_url, prefix, name="b1")
    worker = Worker(redis_url, prefix, name="w1", concurrency=4, heartbeat_s=0.2)
    threads = [threading.Thread(target=balancer.run, daemon=True), threading.Thread(target=worker.run, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        assert worker.wait_registered(10)
        yield
    finally:
        worker.stop(graceful=False)
        balancer.stop()
        for thread in threads:
            thread.join(15)


@pytest.fixture
def cluster(redis_url: str, prefix: str) -> Iterator[None]:
    with running(redis_url, prefix):
        yield


# -- the store ------------------------------------------------------------------------------------


def test_saved_scripts_read_back_listed_by_name_and_deleted(client: Client) -> None:
    store = client.named_scripts
    saved = store.save("zeta", "sh", "echo z")
    store.save("alpha.1", "python", "print(1)", PARAMS)
    assert saved.updated is not None and saved.updated > 1_600_000_000
    assert [s.name for s in store.all()] == ["alpha.1", "zeta"]
    alpha = store.get("alpha.1")
    assert (alpha.language, alpha.body) == ("python", "print(1)")
    assert alpha.params == (Param("who", None, True, "whom to greet"), Param("times", "3"))
    assert alpha.to_dict()["params"][1] == {"name": "times", "default": "3", "required": False, "description": ""}
    store.save("zeta", "bash", "echo replaced")  # a save replaces the whole script
    assert (store.get("zeta").language, store.get("zeta").body) == ("bash", "echo replaced")
    store.delete("zeta")
    with pytest.raises(NoSuchScript, match="no script named 'zeta'"):
        store.get("zeta")
    with pytest.raises(NoSuchScript):
        store.delete("zeta")
    assert json.loads(client.redis.hget(f"{client.prefix}:scripts", "alpha.1"))["language"] == "python"


@pytest.mark.parametrize(
    ("name", "language", "body", "params", "field", "message"),
    [
        ("has space", "sh", "true", [], "name", "'has space' is not a valid script name"),
        ("x" * 65, "sh", "true", [], "name", "is not a valid script name"),
        ("ok", "ruby", "true", [], "language", "language 'ruby' is not one of sh, bash, python, node"),
        ("ok", "sh", "  \n", [], "body", "body: must be a non-empty script"),
        ("ok", "sh", "echo \0", [], "body", "body: holds a NUL character"),
        ("ok", "sh", "true", [{"name": "1st"}], "params", "params[0].name: '1st' is not a valid parameter name"),
        ("ok", "sh", "true", [{"name": "a-b"}], "params", "it becomes the variable JB_PARAM_<NAME>"),
        ("ok", "sh", "true", [{"name": "a"}, {"name": "A"}], "params", "'A' clashes with 'a': both are JB_PARAM_A"),
        ("ok", "sh", "true", [{"name": "a"}, {"name": "a"}], "params", "'a' is declared twice"),
        ("ok", "sh", "true", [{"name": "a", "default": "x", "required": True}], "params", "cannot be required"),
        ("ok", "sh", "true", [{"name": "a", "default": 3}], "params", "params[0].default: must be a string"),
        ("ok", "sh", "true", [{"name": "a", "colour": "red"}], "params", "params[0]: unknown key 'colour'"),
        ("ok", "sh", "true", ["a"], "params", "a parameter is an object with a name"),
    ],
)
def test_invalid_scripts_are_refused_naming_the_field(
    client: Client, name: str, language: str, body: str, params: list, field: str, message: str
) -> None:
    with pytest.raises(InvalidScript, match=message.replace("(", r"\(").replace("[", r"\[")) as caught:
        client.named_scripts.save(name, language, body, params)
    assert caught.value.field == field
    assert client.named_scripts.all() == []


def test_the_body_is_held_to_the_spec_limit(client: Client) -> None:
    client.redis.hset(f"{client.prefix}:config", "spec_limit", "100")
    store = ScriptStore(client.redis, client.keys)  # a fresh store reads the limit now
    with pytest.raises(InvalidScript, match="body: 101 bytes, over the limit of 100 bytes"):
        store.save("big", "sh", "x" * 101)
    assert store.save("fits", "sh", "x" * 100).body == "x" * 100


def test_a_script_edited_into_nonsense_does_not_hide_the_others(client: Client) -> None:
    client.named_scripts.save("good", "sh", "true")
    client.redis.hset(f"{client.prefix}:scripts", "bad", "{not json")
    assert [s.name for s in client.named_scripts.all()] == ["good"]
    with pytest.raises(CorruptRecord, match="script 'bad' cannot be read"):
        client.named_scripts.get("bad")


# -- submitting -----------------------------------------------------------------------------------


def test_submit_resolves_the_script_into_an_argv_job_with_its_params(client: Client) -> None:
    client.named_scripts.save("greet", "sh", BODIES["sh"], PARAMS)
    job = client.submit_script("greet", {"who": "ada"}, queue="q1", priority=5)
    record = job.record()
    assert (record.status, record.kind, record.queue, record.priority) == (Status.QUEUED, "command", "q1", 5)
    assert record.spec["argv"] == ["sh", "-c", BODIES["sh"], "greet", "ada", "3"]
    assert record.spec["env"] == {"JB_PARAM_WHO": "ada", "JB_PARAM_TIMES": "3"}
    assert (record.script, record.params) == ("greet", {"who": "ada", "times": "3"})
    assert job.info()["script"] == "greet" and job.info()["params"] == {"who": "ada", "times": "3"}


def test_each_language_gets_its_interpreter(client: Client) -> None:
    for language in ("bash", "python", "node"):
        client.named_scripts.save(language, language, "body")
    argvs = {lang: client.submit_script(lang).record().spec["argv"] for lang in ("bash", "python", "node")}
    assert argvs == {
        "bash": ["bash", "-c", "body", "bash"],
        "python": ["python3", "-c", "body"],
        "node": ["node", "-e", "body", "--"],
    }


def test_unknown_missing_and_bad_params_and_unknown_scripts_are_refused(client: Client) -> None:
    client.named_scripts.save("greet", "sh", "true", PARAMS)
    with pytest.raises(InvalidScript, match="script 'greet' needs the parameter 'who'") as caught:
        client.submit_script("greet", {"times": "1"})
    assert caught.value.field == "params"
    with pytest.raises(InvalidScript, match=r"has no parameter 'whom' \(it takes who, times\)"):
        client.submit_script("greet", {"who": "x", "whom": "y"})
    with pytest.raises(InvalidScript, match="params.who: must be a string without NUL"):
        client.submit_script("greet", {"who": 7})  # type: ignore[dict-item]
    with pytest.raises(NoSuchScript, match="no script named 'nope'"):
        client.submit_script("nope")
    assert client.jobs() == []


def test_editing_or_deleting_the_script_does_not_change_a_queued_job(client: Client) -> None:
    client.named_scripts.save("greet", "sh", "echo first $1", [{"name": "who"}])
    job = client.submit_script("greet", {"who": "ada"})
    client.named_scripts.save("greet", "python", "print('second')", [{"name": "other", "required": True}])
    assert job.record().spec["argv"] == ["sh", "-c", "echo first $1", "greet", "ada"]
    client.named_scripts.delete("greet")
    assert job.record().spec["argv"] == ["sh", "-c", "echo first $1", "greet", "ada"]


def test_a_scheduled_script_job_keeps_its_script_name(client: Client) -> None:
    client.named_scripts.save("later", "sh", "echo $1", [{"name": "x", "default": "d"}])
    record = client.submit_script("later", delay=3600).record()
    assert (record.status, record.script, record.params) == (Status.SCHEDULED, "later", {"x": "d"})


# -- running --------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["sh", "bash", "python", "node"])
def test_a_worker_runs_each_language_with_args_and_env(client: Client, cluster: None, language: str) -> None:
    if language == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    client.named_scripts.save(f"greet-{language}", language, BODIES[language], PARAMS)
    record = client.submit_script(f"greet-{language}", {"who": "a b; $(rm -rf /)", "times": "--version"}).wait(30)
    assert (record.status, record.exit_code, record.stderr) == (Status.SUCCEEDED, 0, "")
    lines = record.stdout.splitlines()
    # values reach the script literally, as one argument each: nothing in them is interpreted
    assert lines[:2] == ["args: a b; $(rm -rf /)|--version", "env: a b; $(rm -rf /)|--version"]
    if language == "sh":
        assert lines[2] == "zero: greet-sh"


def test_a_job_queued_before_an_edit_runs_the_old_body(client: Client, redis_url: str, prefix: str) -> None:
    client.named_scripts.save("ver", "sh", "echo old $1", [{"name": "x", "default": "1"}])
    job = client.submit_script("ver")
    client.named_scripts.save("ver", "sh", "echo new $1", [{"name": "x", "default": "2"}])
    newer = client.submit_script("ver")
    with running(redis_url, prefix):
        assert (job.wait(30).stdout, newer.wait(30).stdout) == ("old 1\n", "new 2\n")
