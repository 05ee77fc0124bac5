"""Joining a Ray cluster, or starting a local one: the only place that calls ``ray.init``."""

from __future__ import annotations

from types import ModuleType

from ichseg.errors import IchsegError

INSTALL_HINT = "pip install 'ichseg[ray]'"

#: What ``--ray`` without an address means: a Ray instance started on this machine.
LOCAL = "local"

RayAddress = str | bool | None


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise IchsegError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: RayAddress = LOCAL) -> ModuleType:
    """Connect to Ray once per process and return the ``ray`` module.

    ``True``, ``"local"`` or ``None``: a local instance on this machine (all its CPUs and GPUs);
    ``"auto"``: the cluster this machine joined with ``ray start``; ``"HOST:PORT"`` or
    ``"ray://HOST:10001"``: that cluster. A connection already made in this process (a notebook's,
    a test's) is used as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    target = None if address in (None, True, LOCAL) else str(address)
    try:
        ray.init(address=target, logging_level="WARNING", configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise IchsegError(f"--ray {target}: cannot connect to the Ray cluster ({error})") from None
    return ray


def cluster_gpus(ray: ModuleType) -> int:
    """GPUs in the whole cluster (0 on a CPU-only one)."""
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus(ray: ModuleType) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
