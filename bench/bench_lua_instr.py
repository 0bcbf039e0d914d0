"""Redis instructions per decision, counted by valgrind's callgrind: immune to a loaded machine.

Usage: python bench/bench_lua_instr.py [--n 300] [--pools 3,1000] [--out FILE]

``INFO commandstats`` times (``bench_redis_cost.py``) move with the load of the machine
(2 shared cores at load 10-40 doubled them between runs). This script starts its own
``redis-server`` under ``valgrind --tool=callgrind`` on a unix socket (instrumentation
off until measured) and counts the instructions the whole server runs for, per
operation: ``acquire`` + ``complete`` of a lease through ``KeyManager`` (limits far away,
every call granted), ``acquire`` alone (leases completed after the count), and a refused
decision (``RedisLimiter.reserve`` on a full pool). Pools of 3 and 1,000 keys, and the
same pools grouped in quota groups of three. Instructions are not time (cache misses are
not counted), but a change that runs fewer of them costs less on any load. Needs
``valgrind`` and ``callgrind_control`` on the PATH. JSON on stdout (and in --out).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


class Callgrind:
    """A redis-server under callgrind, counted between :meth:`start` and :meth:`stop`."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.sock = os.path.join(workdir, "redis.sock")
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={workdir}/cg.out", "redis-server", "--port", "0",
             "--unixsocket", self.sock, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server under callgrind did not start")
            time.sleep(0.2)
        self.url = f"unix://{self.sock}"

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def start(self) -> None:
        for f in glob.glob(f"{self.dir}/cg.out*"):
            os.remove(f)
        self._control("-z")
        self._control("-i", "on")

    def stop(self) -> int:
        """Instructions counted since :meth:`start`."""
        self._control("-i", "off")
        self._control("-d")
        total = 0
        for f in glob.glob(f"{self.dir}/cg.out*"):
            for line in Path(f).read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        return total

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)


def measure(cg: Callgrind, size: int, n: int, grouped: bool) -> dict[str, Any]:
    from rotating_llm import APIKey, KeyManager, QuotaGroup, Settings
    from rotating_llm.limiter import Refusal
    from rotating_llm.secrets import EnvSecretStore

    def manager(model: str, rpm: int) -> Any:
        keys = [
            APIKey(key_id=f"{model}{i}", model_name=model, provider="x", rpm=rpm, tpm=10**12,
                   quota_group=f"{model}-p{i // 3}" if grouped else None)
            for i in range(size)
        ]  # fmt: skip
        groups = [
            QuotaGroup(group_id=f"{model}-p{j}", rpm=rpm * 3, tpm=10**12)
            for j in range((size + 2) // 3)
        ]
        settings = Settings(
            redis_url=cg.url, key_prefix=f"i{uuid.uuid4().hex[:8]}:", redact_logs=False,
            store_deadline=120.0, store_lost_after=600.0, heartbeat_seconds=0,
        )  # fmt: skip
        env = {f"API_KEY_{model.upper()}{i}": "s" for i in range(size)}
        return KeyManager(keys, settings=settings, secret_store=EnvSecretStore(env),
                          quota_groups=groups if grouped else [])  # fmt: skip

    km = manager("g", 10**8)
    for _ in range(min(size, 50)):  # every key used once (up to 50), scripts loaded
        km.acquire("g", 10).complete(7)
    km.limiter.flush()
    cg.start()
    for _ in range(n):
        km.acquire("g", 10).complete(7)
    km.limiter.flush()
    grant = cg.stop() / n
    held = []
    cg.start()
    for _ in range(n):
        held.append(km.acquire("g", 10))
    decision = cg.stop() / n
    for lease in held:
        lease.complete(7)
    km.limiter.flush()
    km.close()

    km = manager("r", 1)
    for _ in range(size):
        km.acquire("r", 1, max_wait=0).complete(1)
    km.limiter.flush()
    cg.start()
    refused = sum(isinstance(km.limiter.reserve("r", 1), Refusal) for _ in range(n))
    refusal = cg.stop() / n
    km.close()
    return {
        "keys": size,
        "grouped": grouped,
        "acquire_complete_kir": round(grant / 1000, 1),
        "acquire_kir": round(decision / 1000, 1),
        "refusal_kir": round(refusal / 1000, 1),
        "refused": refused,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--pools", default="3,1000")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("needs valgrind and callgrind_control on the PATH")
    with tempfile.TemporaryDirectory() as tmp:
        cg = Callgrind(tmp)
        try:
            rows = [
                measure(cg, int(s), args.n, grouped)
                for s in args.pools.split(",")
                for grouped in (False, True)
            ]
        finally:
            cg.close()
    plain = {r["keys"]: r for r in rows if not r["grouped"]}
    result = {
        "what": "instructions (thousands, Ir) the redis-server process ran per operation",
        "n": args.n,
        "pools": rows,
        "grouped_vs_ungrouped": {
            str(r["keys"]): {
                k: round(r[k] / plain[r["keys"]][k], 2)
                for k in ("acquire_kir", "acquire_complete_kir", "refusal_kir")
            }
            for r in rows
            if r["grouped"]
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
