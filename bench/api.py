"""API benchmark: does bcrypt stall other requests?

Starts a real daemon (default bcrypt cost, SQLite) on loopback, then measures `GET /auth/info` from
concurrent clients twice in the same run: alone, and while 20 logins run at once. Prints requests/s and
p50/p99 latency side by side, and the ratio of the two p99s (1.0 = logins cost other requests nothing).

    .venv/bin/python bench/api.py [--clients 20] [--seconds 10] [--logins 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import aiohttp

PASSWORD = "Bench_password1"


@dataclass
class Sample:
    latencies_ms: list[float]
    seconds: float

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daemon(data_dir: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "LAZYD_DATA_DIR": data_dir, "LAZYD_LOGGING__LEVEL": "warning"}
    subprocess.run([sys.executable, "-m", "lazyd", "user", "add", "benchuser", "--password-stdin"],
                   input=PASSWORD, text=True, env=env, check=True, capture_output=True)
    return subprocess.Popen([sys.executable, "-m", "lazyd", "serve", "--port", str(port)], env=env)


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(base + "/") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the daemon did not start")


async def login(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(base + "/auth/login", json={"username": "benchuser", "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["access_token"]


async def hammer_info(session: aiohttp.ClientSession, base: str, token: str, clients: int,
                      seconds: float) -> Sample:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with session.get(base + "/auth/info", headers=headers) as response:
                await response.read()
                assert response.status == 200
            latencies.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Sample(latencies, time.perf_counter() - started)


async def logins_in_flight(session: aiohttp.ClientSession, base: str, count: int, stop: asyncio.Event,
                           latencies: list[float]) -> None:
    """Keep ``count`` logins running at once until ``stop`` is set."""

    async def one() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await login(session, base)
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(one() for _ in range(count)))


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        daemon = start_daemon(data_dir, port)
        try:
            connector = aiohttp.TCPConnector(limit=args.clients + args.logins + 4)
            async with aiohttp.ClientSession(connector=connector) as session:
                await wait_ready(session, base)
                token = await login(session, base)
                await hammer_info(session, base, token, args.clients, 1.0)  # warm-up
                alone = await hammer_info(session, base, token, args.clients, args.seconds)
                stop, login_ms = asyncio.Event(), []
                background = asyncio.create_task(logins_in_flight(session, base, args.logins, stop, login_ms))
                await asyncio.sleep(0.5)
                loaded = await hammer_info(session, base, token, args.clients, args.seconds)
                stop.set()
                await background
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    report(args, alone, loaded, login_ms)


def report(args: argparse.Namespace, alone: Sample, loaded: Sample, login_ms: list[float]) -> None:
    print(f"GET /auth/info, {args.clients} concurrent clients, {args.seconds:.0f} s each, "
          f"{os.cpu_count()} cores, default bcrypt cost")
    print(f"| {'measurement':<42} | {'req/s':>8} | {'p50 ms':>8} | {'p99 ms':>8} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for name, sample in (("/auth/info alone", alone), (f"/auth/info with {args.logins} logins at once", loaded)):
        print(f"| {name:<42} | {sample.rps:>8.0f} | {sample.percentile(50):>8.1f} | {sample.percentile(99):>8.1f} |")
    logins = Sample(login_ms, args.seconds)
    print(f"| {'the logins themselves':<42} | {logins.rps:>8.1f} | {logins.percentile(50):>8.1f} | "
          f"{logins.percentile(99):>8.1f} |")
    print(f"p99 ratio (with logins / alone): {loaded.percentile(99) / alone.percentile(99):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--logins", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
