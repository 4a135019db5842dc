"""The worker process: loads the bento's models once, runs batches that arrive on TCP.

``jubako runtime worker --bento DIR --port 7000 --http-port 7001``. The HTTP port answers
``/livez`` at once, ``/readyz`` once the models are loaded, and ``/metrics``; the batch
port opens only once the models are loaded, so a proxy that can connect can be served.
Sync API code runs on one dedicated thread (the model's own intra-op threads do the
parallel work), async APIs on the event loop. SIGTERM/SIGINT: stop accepting, finish and
answer every batch received, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from jubako import devices, logs
from jubako.errors import JubakoError
from jubako.workers import wire
from jubako.workers.executor import ApiRunner, configure_threads, failed, runners

from .health import HealthServer

log = logging.getLogger("jubako.runtime.worker")


def load(bento: str | Path) -> tuple[Any, dict[str, ApiRunner], str | None]:
    import jubako.models
    from jubako.loader import load_service, open_bento

    bundle = open_bento(bento)
    device = configure_threads()
    service = load_service(bundle)
    with jubako.models.bento_context(bundle.path, bundle.manifest):
        instance = service.create()
    return bundle, runners(service, instance, device), device


class Worker:
    def __init__(self, bento: str | Path, host: str, port: int, http_port: int | None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.bento = bento
        self.host, self.port, self.http_port = host, port, http_port
        self.runners: dict[str, ApiRunner] = {}
        self.ready = False
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="jubako-api")
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.base_events.Server | None = None
        self.stopping = asyncio.Event()
        self.registry = CollectorRegistry()
        self.m_batches = Counter("jubako_worker_batches", "Batches run", ["api"], registry=self.registry)
        self.m_items = Counter("jubako_worker_items", "Items run", ["api"], registry=self.registry)
        self.m_exec = Histogram(
            "jubako_worker_batch_seconds", "Execution time of a batch", ["api"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.m_ready = Gauge("jubako_worker_ready", "1 once the models are loaded", registry=self.registry)
        self.info = b"{}"

    async def pool_call(self, fn: Any, arg: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, arg)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        health = None
        if self.http_port is not None:
            health = HealthServer(lambda: self.ready, self.registry, role="worker")
            await health.start(self.host, self.http_port)
        t0 = time.perf_counter()
        # load on the API thread: torch keeps per-thread state, and the loop stays responsive
        bundle, self.runners, device = await loop.run_in_executor(self.pool, load, self.bento)
        self.info = orjson.dumps(
            {"pid": os.getpid(), "bento": str(bundle.manifest.tag), "apis": list(self.runners), "device": device}
        )
        self.server = await asyncio.start_server(self._serve, self.host, self.port, backlog=256)
        self.ready = True
        self.m_ready.set(1)
        log.info(
            "worker %s ready in %.1fs: %s on %s:%d (device %s, %d intra-op threads)", os.getpid(),
            time.perf_counter() - t0, bundle.manifest.tag, self.host, self.port, device or "n/a",
            devices.num_threads(),
        )
        await self.stopping.wait()
        log.info("worker %s draining %d batch(es)", os.getpid(), len(self.tasks))
        self.server.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks))
        self.ready = False
        if health:
            await health.stop()
        self.pool.shutdown(wait=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(wire.encode_hello(self.info))
        frames = wire.FrameReader()
        mine: set[asyncio.Task[Any]] = set()
        try:
            while not self.stopping.is_set():
                data = await reader.read(1 << 20)
                if not data:
                    break
                now = time.perf_counter()
                for body in frames.feed(data):
                    if wire.kind_of(body) != wire.CALL:
                        continue
                    task = asyncio.ensure_future(self._run(wire.decode_call(body), now, writer))
                    self.tasks.add(task)
                    mine.add(task)
                    task.add_done_callback(self.tasks.discard)
                    task.add_done_callback(mine.discard)
        except (ConnectionError, ValueError) as e:
            log.warning("connection dropped: %s", e)
        finally:
            if mine:
                await asyncio.wait(list(mine))
            writer.close()

    async def _run(self, call: wire.Call, received: float, writer: asyncio.StreamWriter) -> None:
        runner = self.runners.get(call.api)
        if runner is None:
            msg = f"no API named {call.api!r}".encode()
            frame = wire.encode_result(call.id, 0.0, 0.0, [404] * len(call.sizes), [msg] * len(call.sizes))
        else:
            try:
                frame = await runner.run(call, received, self.pool_call)
            except Exception as e:  # a bug of ours or a frame too large: still answer each request
                log.exception("API %r: the batch failed outside the API", call.api)
                frame = failed(call, f"API {call.api!r}: the worker could not build its answer: "
                                     f"{type(e).__name__}: {e}")
            self.m_batches.labels(call.api).inc()
            self.m_items.labels(call.api).inc(sum(call.sizes))
            self.m_exec.labels(call.api).observe(wire.decode_result_times(frame))
        if not writer.is_closing():
            writer.write(frame)


def run(bento: str | Path, port: int, http_port: int | None, host: str = "0.0.0.0") -> None:
    from .proxy import event_loop_policy

    logs.configure()  # JSON lines in pods, text on a terminal (JUBAKO_LOG_FORMAT / _LEVEL)
    event_loop_policy()
    worker = Worker(bento, host, port, http_port)
    try:
        asyncio.run(worker.main())
    except Exception as e:
        if worker.ready:
            raise
        # the bento does not load (a service whose __init__ raises, a missing model): say
        # so once and exit, so that `jubako serve` stops and a pod shows CrashLoopBackOff
        # with the reason in its termination message, instead of a restart loop
        message = f"{type(e).__name__}: {e}"
        log.error("worker could not start: %s", message, exc_info=not isinstance(e, JubakoError))
        termination_log(message)
        raise SystemExit(1) from None


def termination_log(message: str) -> None:
    """Write ``message`` where Kubernetes reads a container's termination message
    (``JUBAKO_TERMINATION_LOG``, default /dev/termination-log), when that file exists and is
    writable: the kubelet creates it in a pod; elsewhere nothing is created."""
    from jubako.environment import write_termination_message

    path = Path(os.environ.get("JUBAKO_TERMINATION_LOG") or "/dev/termination-log")
    if path.is_file() and os.access(path, os.W_OK):
        write_termination_message(path, message)
