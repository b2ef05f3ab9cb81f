"""Tribune's replacement for py-consul's root ``conftest.py``.

`cargo xtask compat py` copies this file over the one shipped in the py-consul
sdist (which starts Consul in Docker).  It keeps the upstream fixture names and
what they yield, so the upstream test files run unchanged:

* ``consul_instance``     -> ``ConsulInstance(container, port, version)``
* ``acl_consul_instance`` -> ``(ConsulInstance(...), master_token)``
* ``consul_port``         -> ``(port, version)``
* ``_unset_consul_token`` (session, autouse) drops ``CONSUL_HTTP_TOKEN``

(``tests/conftest.py`` builds ``consul_obj`` and ``acl_consul`` on top of these.)

Instead of a container, every test gets its own ``<binary> agent -dev
-config-file <tmp>/config.json -log-level trace`` on free 127.0.0.1 ports, with
the same agent configuration upstream passes through ``CONSUL_LOCAL_CONFIG``
and the same readiness checks (``/v1/status/leader`` returns a non-empty
leader within 10 s, then a registered service shows up in
``/v1/health/service/<name>``).  ``ConsulInstance.container`` holds an
``AgentProcess`` instead of a Docker container.

The binary is ``$TRIBUNE_BIN`` if set, otherwise ``consul`` from ``$PATH``
(so the same file also runs the suite against a real Consul for comparison).

Environment knobs:

* ``TRIBUNE_BIN``                      binary to start (default: ``consul`` on PATH)
* ``TRIBUNE_COMPAT_READY_TIMEOUT``     seconds to wait for a leader (default 10, as upstream)
* ``TRIBUNE_COMPAT_MAX_START_FAILURES`` after this many consecutive agents that never
  became ready, later fixtures of the same kind (plain, or with ACLs) fail at once
  instead of waiting (default 5, 0 = never)
* ``TRIBUNE_COMPAT_LOGS_DIR``          per-test agent logs (default ``<here>/logs``)
* ``TRIBUNE_COMPAT_PRIVATE_NET``       ``1`` when the session runs in a network namespace
  of its own: agents then take port 8500 for HTTP when it is free (see below)
* ``TRIBUNE_COMPAT_REPORT``            if set, a JSON report (outcome and group per test)
  is written there at the end of the session

Tests are also classified into the groups the xtask reports: ``offline``
(tests that start no agent: unit tests of the client library), ``connect``
(``tests/api/test_connect.py`` and tests with ``connect`` as a word of their
name), ``acl`` (tests that use ``acl_consul_instance``), ``core`` (the rest).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests
from requests import RequestException

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS_DIR = os.environ.get("TRIBUNE_COMPAT_LOGS_DIR") or os.path.join(HERE, "logs")
os.makedirs(LOGS_DIR, exist_ok=True)

# Upstream runs each agent in a Docker container, where it listens on 8500, and a
# few tests point HTTP checks at http://localhost:8500, i.e. at the agent itself.
# When the xtask has put this session in a network namespace of its own (nothing
# else can hold or want the port there), an agent takes 8500 for HTTP whenever it
# is free, so those checks find an agent as they do upstream.
PRIVATE_NET = os.environ.get("TRIBUNE_COMPAT_PRIVATE_NET") == "1"
DEFAULT_HTTP_PORT = 8500

READY_TIMEOUT = float(os.environ.get("TRIBUNE_COMPAT_READY_TIMEOUT", "10"))
MAX_START_FAILURES = int(os.environ.get("TRIBUNE_COMPAT_MAX_START_FAILURES", "5"))
STOP_TIMEOUT = 10.0

# Consecutive agents that never became ready (see TRIBUNE_COMPAT_MAX_START_FAILURES),
# counted apart for plain agents and for agents configured with ACLs: an agent
# that refuses an ACL configuration (Tribune does not enforce ACLs yet, and exits
# rather than run one open, unless told to as below) must not stop the plain
# agents of later tests.
_start_failures = {
    False: {"count": 0, "last": ""},
    True: {"count": 0, "last": ""},
}


# ---------------------------------------------------------------------------
# Fixtures (same names and yields as upstream)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    if "CONSUL_HTTP_TOKEN" in os.environ:
        del os.environ["CONSUL_HTTP_TOKEN"]


@pytest.fixture
def consul_instance(request):
    yield from setup_and_teardown_consul(request)


@pytest.fixture
def acl_consul_instance(request):
    acl_master_token = uuid.uuid4().hex
    yield from setup_and_teardown_consul(request, acl_master_token=acl_master_token)


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version


# ---------------------------------------------------------------------------
# Starting and stopping the agent
# ---------------------------------------------------------------------------


def agent_binary() -> str:
    explicit = os.environ.get("TRIBUNE_BIN")
    if explicit:
        return explicit
    found = shutil.which("consul")
    if found:
        return found
    raise RuntimeError("no agent binary: set TRIBUNE_BIN or put a `consul` on PATH")


def default_http_port_free() -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", DEFAULT_HTTP_PORT))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 for both TCP and UDP (serf uses both)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            held += [tcp, udp]
            ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def agent_config(ports: dict[str, int], acl_master_token: str | None) -> dict:
    # Upstream's CONSUL_LOCAL_CONFIG, plus the ports Docker used to remap for it.
    config: dict = {
        "ports": {
            "http": ports["http"],
            "https": -1,
            "dns": -1,
            "grpc": ports["grpc"],
            "grpc_tls": -1,
            "serf_lan": ports["serf_lan"],
            "serf_wan": ports["serf_wan"],
            "server": ports["server"],
        },
        "performance": {"raft_multiplier": 1},
        "enable_script_checks": True,
    }
    if acl_master_token:
        config["primary_datacenter"] = "dc1"
        config["acl"] = {"enabled": True, "tokens": {"initial_management": acl_master_token}}
    return config


class AgentProcess:
    """Stands in for upstream's Docker container: one agent process and its log."""

    def __init__(self, name: str, acl_master_token: str | None = None):
        self.name = name
        self.binary = agent_binary()
        names = ["http", "grpc", "serf_lan", "serf_wan", "server"]
        self.ports = dict(zip(names, free_ports(len(names))))
        if PRIVATE_NET and default_http_port_free():
            self.ports["http"] = DEFAULT_HTTP_PORT
        self.port = self.ports["http"]
        self.tmpdir = tempfile.mkdtemp(prefix="tribune-pyconsul-")
        self.config_path = os.path.join(self.tmpdir, "config.json")
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(agent_config(self.ports, acl_master_token), f)
        self.log_path = os.path.join(LOGS_DIR, f"{safe_name(name)}.log")
        self.args = [self.binary, "agent", "-dev", "-config-file", self.config_path, "-log-level", "trace"]
        self._log = open(self.log_path, "wb")  # pylint: disable=consider-using-with
        self._log.write(("# " + " ".join(self.args) + "\n").encode())
        self._log.flush()
        try:
            # Tribune refuses to run an ACL configuration it cannot enforce unless
            # told to run it open; the ACL fixture's agents are told, so that the
            # tests that only need such an agent (the Connect ones) still run, and
            # the ACL tests fail on what they check rather than at start.
            env = dict(os.environ)
            if acl_master_token:
                env["TRIBUNE_ALLOW_UNENFORCED_ACLS"] = "1"
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                env=env,
            )
        except OSError:
            self._log.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def logs(self, tail: int = 0) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def stop(self) -> None:
        # Like Consul's test helper: SIGINT, then give up after a while.
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._log.write(b"\n# tribune-compat: agent ignored SIGINT for 10s, killing it\n")
                self.proc.kill()
                self.proc.wait()
        self._log.write(f"\n# tribune-compat: agent exited with {self.proc.returncode}\n".encode())
        self._log.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:200]


def wait_until_ready(agent: AgentProcess) -> None:
    """Upstream's readiness checks, failing fast if the process dies."""
    base_uri = f"http://127.0.0.1:{agent.port}/v1/"
    start_time = time.time()
    while True:
        if agent.exited():
            raise RuntimeError(f"agent exited with {agent.proc.returncode} before electing a leader")
        if time.time() - start_time > READY_TIMEOUT:
            raise TimeoutError(f"no leader on /v1/status/leader within {READY_TIMEOUT:g}s")
        time.sleep(0.1)
        try:
            response = requests.get(base_uri + "status/leader", timeout=2)
            if response.status_code == 200 and response.json():
                break
        except (RequestException, ValueError):
            continue

    # Upstream's "additional check to ensure Consul is fully ready".
    last = "no response"
    for _ in range(10):
        if agent.exited():
            raise RuntimeError(f"agent exited with {agent.proc.returncode} during readiness checks")
        try:
            requests.put(base_uri + "agent/service/register", json={"name": "test-service"}, timeout=2)
            response = requests.get(base_uri + "health/service/test-service", timeout=2)
            if response.status_code == 200 and response.json():
                requests.put(base_uri + "agent/service/deregister/test-service", timeout=2)
                return
            last = f"health/service/test-service -> {response.status_code} {response.text[:200]!r}"
        except (RequestException, ValueError) as e:
            last = repr(e)
        # Upstream only sleeps after connection errors; a short pause keeps the
        # ten attempts from all landing in the same millisecond.
        time.sleep(0.1)
    raise RuntimeError(f"failed to verify agent startup: {last}")


def get_consul_version(port: int) -> str:
    base_uri = f"http://127.0.0.1:{port}/v1/"
    response = requests.get(base_uri + "agent/self", timeout=10)
    return response.json()["Config"]["Version"].strip()


def start_agent(name: str, acl_master_token: str | None = None) -> tuple[AgentProcess, str]:
    failures = _start_failures[acl_master_token is not None]
    if MAX_START_FAILURES and failures["count"] >= MAX_START_FAILURES:
        raise RuntimeError(
            f"not starting an agent: the last {failures['count']} agents never became ready "
            f"(last error: {failures['last']})"
        )
    try:
        agent = AgentProcess(name, acl_master_token)
    except Exception as e:
        failures["count"] += 1
        failures["last"] = repr(e)
        raise
    try:
        wait_until_ready(agent)
    except Exception as e:  # pylint: disable=broad-exception-caught
        failures["count"] += 1
        failures["last"] = str(e)
        agent.stop()
        raise RuntimeError(f"{e}\n--- agent log tail ({agent.log_path}) ---\n{agent.logs(tail=30)}") from None
    failures["count"] = 0
    try:
        version = get_consul_version(agent.port)
    except Exception as e:
        agent.stop()
        raise RuntimeError(f"cannot read Config.Version from /v1/agent/self: {e!r}") from None
    return agent, version


def setup_and_teardown_consul(request, acl_master_token: str | None = None):
    agent, version = start_agent(request.node.nodeid, acl_master_token)
    instance = ConsulInstance(agent, agent.port, version)
    try:
        yield instance if acl_master_token is None else (instance, acl_master_token)
    finally:
        agent.stop()


# ---------------------------------------------------------------------------
# Grouping and the JSON report read by `cargo xtask compat py`
# ---------------------------------------------------------------------------

GROUPS = ("core", "acl", "connect", "offline")
SERVER_FIXTURES = ("consul_instance", "acl_consul_instance")
_groups: dict[str, str] = {}
_outcomes: dict[str, dict] = {}


def classify(item) -> str:
    fixtures = getattr(item, "fixturenames", ())
    if not any(f in fixtures for f in SERVER_FIXTURES):
        return "offline"  # unit tests of the client itself; they pass without any server
    path = str(getattr(item, "path", item.fspath))
    words = re.split(r"[^a-z0-9]+", getattr(item, "originalname", item.name).lower())
    if os.path.basename(path) == "test_connect.py" or "connect" in words:
        return "connect"
    if "acl_consul_instance" in fixtures:
        return "acl"
    return "core"


def pytest_collection_modifyitems(session, config, items):  # pylint: disable=unused-argument
    for item in items:
        _groups[item.nodeid] = classify(item)


def pytest_runtest_logreport(report):
    entry = _outcomes.setdefault(report.nodeid, {"outcome": None, "duration": 0.0, "message": ""})
    entry["duration"] += getattr(report, "duration", 0.0) or 0.0
    if report.failed:
        # A failed setup/teardown is an error; it overrides anything seen before.
        if entry["outcome"] != "failed":
            entry["outcome"] = "failed"
            entry["message"] = failure_line(report)
    elif report.skipped:
        if entry["outcome"] is None:
            entry["outcome"] = "skipped"
    elif report.when == "call" and entry["outcome"] is None:
        entry["outcome"] = "passed"


def failure_line(report) -> str:
    text = getattr(report, "longreprtext", "") or ""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    err = [l for l in lines if l.startswith("E ")]
    line = err[0][1:].strip() if err else (lines[-1] if lines else "")
    return f"{report.when}: {line}"[:300]


def group_counts() -> dict[str, dict[str, int]]:
    counts = {g: {"passed": 0, "failed": 0, "skipped": 0} for g in GROUPS}
    for nodeid, entry in _outcomes.items():
        outcome = entry["outcome"] or "failed"
        counts[_groups.get(nodeid, "core")][outcome] += 1
    return counts


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # pylint: disable=unused-argument
    counts = group_counts()
    terminalreporter.section("tribune compat groups")
    for g in GROUPS:
        c = counts[g]
        terminalreporter.write_line(f"{g}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("TRIBUNE_COMPAT_REPORT")
    if not path:
        return
    tests = [
        {
            "id": nodeid,
            "group": _groups.get(nodeid, "core"),
            "outcome": entry["outcome"] or "failed",
            "duration": round(entry["duration"], 3),
            "message": entry["message"],
        }
        for nodeid, entry in _outcomes.items()
    ]
    report = {
        "exitstatus": int(exitstatus),
        "collected": len(_groups),
        "tests": tests,
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)
