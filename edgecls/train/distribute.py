"""Where training runs: one device, the local GPUs, or several machines — through tf.distribute only.

- ``default``: TensorFlow's default strategy (one device), trained by ``model.fit`` as always.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every local GPU (the CPU where there is none).
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the machines that ``TF_CONFIG``
  names, one process per machine, each with its own ``TF_CONFIG`` (its own ``task``).

``TF_CONFIG`` is checked here before TensorFlow sees it, so a mistake is one line naming the field.
Waits are bounded: the cluster must come up within ``worker_timeout`` seconds (TensorFlow's
coordination service, ``cluster_register_timeout``), and a worker that stops answering is noticed
within ``heartbeat_timeout`` seconds (its heartbeat), after which every collective is aborted and
training raises `WorkerLost`.
"""

from __future__ import annotations

import enum
import json
import os
import re
import socket
from dataclasses import dataclass

from ..core.errors import EdgeclsError, RunFailed

ENV = "TF_CONFIG"
JOBS = ("chief", "worker")  # parameter servers and evaluators are not used by these strategies
SHUTDOWN_WAIT = 3600.0  # seconds a finished worker waits at exit for the chief to evaluate and write (a lost
                        # chief is noticed by its heartbeat long before)


class Strategy(str, enum.Enum):
    default = "default"
    mirrored = "mirrored"
    multiworker = "multiworker"


#: TensorFlow versions whose private coordination-service API (`_coordination`) this module was tested with
TESTED_TF = ("2.21",)
#: TensorFlow error classes that mean a peer stopped answering (a lost worker), not a failure of this one
LOST_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


class WorkerLost(RunFailed):
    """A worker of a multi-worker run stopped answering, or the cluster never came up (exit code 3)."""


@dataclass(frozen=True)
class Cluster:
    """The cluster a TF_CONFIG describes, seen from this process's task."""

    tasks: tuple[tuple[str, str], ...]  # (job, "host:port"), the chief (or worker 0) first
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        return len(self.tasks)

    @property
    def address(self) -> str:
        return next(a for i, (job, a) in enumerate(self.tasks)
                    if job == self.task_type and self._index_in_job(i) == self.task_index)

    def _index_in_job(self, i: int) -> int:
        return sum(1 for job, _ in self.tasks[:i] if job == self.tasks[i][0])

    @property
    def chief(self) -> bool:
        """The task that writes the bundle: `chief`, or `worker` 0 where the cluster has no chief."""
        has_chief = any(job == "chief" for job, _ in self.tasks)
        return self.task_type == "chief" or (not has_chief and self.task_index == 0)


def parse_tf_config(text: str | None) -> Cluster:
    """Check a TF_CONFIG value and return its cluster.

    Raises:
        EdgeclsError: unset, not JSON, or a field missing or wrong (the message names it).
    """
    if not text:
        raise EdgeclsError(f"--strategy multiworker: {ENV} is not set; give each worker its own {ENV} "
                           "(see docs/scale.md)")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgeclsError(f"{ENV}: not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(cfg, dict):
        raise EdgeclsError(f"{ENV}: expected a JSON object with 'cluster' and 'task'")
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise EdgeclsError(f"{ENV}: 'cluster' is missing or empty (expected {{\"worker\": [\"host:port\", ...]}})")
    for job, addresses in cluster.items():
        if job not in JOBS:
            raise EdgeclsError(f"{ENV}: cluster job {job!r} is not supported (only 'chief' and 'worker')")
        if not isinstance(addresses, list) or not addresses:
            raise EdgeclsError(f"{ENV}: cluster.{job} must be a non-empty list of \"host:port\" addresses")
        for a in addresses:
            _check_address(a, f"cluster.{job}")
    if len(cluster.get("chief", [])) > 1:
        raise EdgeclsError(f"{ENV}: cluster.chief lists {len(cluster['chief'])} addresses; at most 1")
    tasks = tuple((job, a) for job in JOBS for a in cluster.get(job, []))
    seen = [a for _, a in tasks]
    dup = next((a for a in seen if seen.count(a) > 1), None)
    if dup:
        raise EdgeclsError(f"{ENV}: address {dup} is listed twice; every task needs its own host:port")
    if not isinstance(task, dict):
        raise EdgeclsError(f"{ENV}: 'task' is missing (expected {{\"type\": \"worker\", \"index\": 0}})")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise EdgeclsError(f"{ENV}: task.type {kind!r} is not a job of the cluster ({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise EdgeclsError(f"{ENV}: task.index {index!r} is out of range for job {kind!r} "
                           f"(0 to {len(cluster[kind]) - 1})")
    return Cluster(tasks, kind, index)


def _check_address(a, where: str) -> None:
    host, _, port = a.rpartition(":") if isinstance(a, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgeclsError(f"{ENV}: {where} address {a!r} is not host:port (port 1 to 65535)")


def check_port_free(address: str) -> None:
    """Fail now, naming the address, if this task cannot listen on its port (gRPC binds every interface)."""
    port = int(address.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a port in TIME_WAIT is free
        try:
            s.bind(("", port))
        except OSError as e:
            raise EdgeclsError(f"{ENV}: this task cannot listen on {address} ({e.strerror or e}); "
                               "another process holds the port, or the address is not this machine's") from None


def is_chief(kind: Strategy | str) -> bool:
    """Does this process write the bundle? Always on one machine; under ``multiworker``, the chief
    (TF_CONFIG checked here, so a bad one fails before any work)."""
    if Strategy(kind) is not Strategy.multiworker:
        return True
    return parse_tf_config(os.environ.get(ENV)).chief


@dataclass(frozen=True)
class Placement:
    """What a strategy gives training: replicas in step, how many workers, and whether this one writes."""

    strategy: Strategy
    replicas: int
    workers: int
    chief: bool
    task: str  # "chief/0", "worker/1"; "local" for one machine

    def to_dict(self) -> dict:
        return {"strategy": self.strategy.value, "replicas": self.replicas, "workers": self.workers,
                "task": self.task}


def create(kind: Strategy | str, *, worker_timeout: float = 120.0, heartbeat_timeout: float = 10.0):
    """The tf.distribute strategy for `kind` and its `Placement`; call before any other TensorFlow work.

    For ``multiworker`` the TF_CONFIG of this process is checked and the port probed first; the
    cluster must register within `worker_timeout` seconds, and a worker silent for
    `heartbeat_timeout` seconds is declared lost.

    Raises:
        EdgeclsError: a bad TF_CONFIG, a port in use, or a strategy TensorFlow cannot create.
        WorkerLost: the other workers did not come up in time.
    """
    from ..core._tf import tensorflow

    try:
        kind = Strategy(kind)
    except ValueError:
        raise EdgeclsError(f"--strategy {kind!r}: expected one of {', '.join(s.value for s in Strategy)}") from None
    if not 0 < worker_timeout <= 86400 or not 0 < heartbeat_timeout <= 3600:
        raise EdgeclsError("--worker-timeout and the heartbeat timeout must be positive (at most a day)")
    if kind is Strategy.default:
        return None, Placement(kind, 1, 1, True, "local")
    if kind is Strategy.mirrored:
        strategy = tensorflow().distribute.MirroredStrategy()
        return strategy, Placement(kind, strategy.num_replicas_in_sync, 1, True, "local")
    cluster = parse_tf_config(os.environ.get(ENV))
    check_port_free(cluster.address)
    tf = tensorflow()
    coordination_config_pb2, context = _coordination(tf)
    try:
        jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=sum(1 for j, _ in cluster.tasks
                                                                               if j == job))
                for job in JOBS if any(j == job for j, _ in cluster.tasks)]
        leader = f"/job:{cluster.tasks[0][0]}/replica:0/task:0"
        context.context().configure_coordination_service(
            service_type="standalone", service_leader=leader, coordinated_jobs=jobs,
            cluster_register_timeout_in_ms=int(worker_timeout * 1000),
            heartbeat_timeout_in_ms=int(heartbeat_timeout * 1000),
            shutdown_barrier_timeout_in_ms=int(max(worker_timeout, SHUTDOWN_WAIT) * 1000))
        # registration as a barrier: without it the register timeout is not enforced and start-up waits forever
        context.context().coordination_service.cluster_register_with_barrier = True
    except (AttributeError, TypeError, ValueError) as e:
        raise _moved(tf, e) from None
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.OpError as e:
        if "grpc server" in e.message.lower():
            raise EdgeclsError(f"{ENV}: this task cannot listen on {cluster.address} "
                               f"({_first_line(e.message)})") from None
        raise WorkerLost(f"--strategy multiworker: the cluster of {cluster.size} did not come up within "
                         f"{worker_timeout:g}s (start every worker; check that each TF_CONFIG lists the same "
                         "cluster and that every host:port is reachable, or raise --worker-timeout)") from None
    except (RuntimeError, ValueError) as e:
        raise WorkerLost(f"--strategy multiworker: cannot start ({_first_line(str(e))})") from None
    return strategy, Placement(kind, strategy.num_replicas_in_sync, cluster.size, cluster.chief,
                               f"{cluster.task_type}/{cluster.task_index}")


def _coordination(tf):
    """TensorFlow's private coordination-service API (the config proto, the eager context), or a clear error
    naming the TensorFlow version when a release has moved it. Tested with `TESTED_TF`."""
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context
    except (ImportError, AttributeError) as e:
        raise _moved(tf, e) from None
    return coordination_config_pb2, context


def _moved(tf, e: Exception) -> EdgeclsError:
    version = getattr(tf, "__version__", "?")
    return EdgeclsError(
        f"--strategy multiworker: TensorFlow {version} does not have the coordination-service API edgecls uses "
        f"({type(e).__name__}: {_first_line(str(e))}); edgecls is tested with TensorFlow "
        f"{', '.join(TESTED_TF)}: install that (pip install 'edgecls[train]'), or use --strategy mirrored")


def _first_line(text: str) -> str:
    """TensorFlow's message, first line, without its ``{{function_node ...}}`` prefix."""
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "no detail")
    return re.sub(r"^(\{\{[^}]*\}\}\s*)+", "", line).rstrip(":")[:300]


def lost(e: Exception, placement: Placement) -> WorkerLost:
    """The error training raises when a collective fails under `placement` (a worker died or hung)."""
    return WorkerLost(f"--strategy {placement.strategy.value}: training stopped on {placement.task}: another "
                      f"worker stopped answering ({_first_line(getattr(e, 'message', e))}); nothing was written")


def failure(e: Exception, placement: Placement) -> RunFailed:
    """What a TensorFlow error under a strategy means, as the error training raises (exit code 3):
    out of memory is said to be out of memory; only a peer's silence in a multi-worker run is a lost
    worker; anything else is named with TensorFlow's error type."""
    kind, message = type(e).__name__, _first_line(getattr(e, "message", e))
    where = f"--strategy {placement.strategy.value}: training stopped on {placement.task}"
    if kind == "ResourceExhaustedError":
        return RunFailed(f"{where}: out of memory ({message}); lower --batch-size (the global batch is split "
                         "over the replicas), or use a smaller --arch or --image-size; nothing was written")
    if kind in LOST_ERRORS and placement.workers > 1:
        return lost(e, placement)
    return RunFailed(f"{where}: TensorFlow {kind} ({message}); nothing was written")
