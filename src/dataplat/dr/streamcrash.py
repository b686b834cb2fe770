"""The ``stream-crash`` drill: nats-server killed with kill -9 mid-publish.

A producer publishes with acks (``Nats-Msg-Id`` per message, retried with the same id
until acknowledged) into a dedicated file-storage stream while a durable pull consumer
reads and acks. nats-server is killed with SIGKILL and started again the way
roles/stream starts it (same argv, user, checksum). Checked: every acknowledged message
is in the stream afterwards (read back by an audit consumer); the durable consumer
resumed without gaps (duplicates are reported: delivery is at-least-once).

The report states the JetStream ``sync_interval`` in force (``/varz``): by default
nats-server fsyncs every 2 minutes, so an acknowledged message is in the OS page cache,
which survives a *process* kill but not a power loss or kernel crash of the host; only
``sync_interval: always`` (or replicas on other hosts) covers those.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from dataplat.deploy import daemon
from dataplat.dr import faults
from dataplat.dr.context import DrillContext, DrillError, poll
from dataplat.dr.results import Repetition
from dataplat.platform import endpoints
from dataplat.platform.stream import monitor


def sync_setting(monitor_url: str) -> dict[str, Any]:
    """The JetStream fsync policy in force, and what it guarantees."""
    cfg = monitor(monitor_url, "/varz").get("jetstream", {}).get("config", {})
    raw = cfg.get("sync_interval")
    always = bool(cfg.get("sync_always"))
    interval_s = None if raw is None else raw / 1e9
    if always:
        meaning = "fsync after every write: acknowledged messages survive a process kill and a power loss"
    else:
        shown = "2m (default)" if raw is None or interval_s == 120 else f"{interval_s:g} s"
        meaning = (
            f"fsync every {shown}: an acknowledged message is in the OS page cache, which survives a kill "
            "of the nats-server process; a power loss or kernel crash may lose up to that interval of "
            "acknowledged messages on this node (set `sync_interval: always` or use replicas on other hosts)"
        )
    return {"sync_interval_s": interval_s, "sync_always": always, "meaning": meaning}


async def _drill(ctx: DrillContext, rep: Repetition) -> dict[str, Any]:
    sc, platform = ctx.scenario, ctx.platform
    w = sc.workload
    nodes = platform.by_component("stream")
    node = next((n for n in nodes if n["name"] == sc.fault["node"]), nodes[0]) if nodes else None
    if node is None:
        raise DrillError("no stream node is deployed")
    servers = endpoints.nats_servers(platform)
    stream, subject = str(w["stream"]), str(w["subject"])
    payload = b"x" * int(w["payload_bytes"])
    recipe = faults.daemon_recipe(platform, node["name"])
    nc = await nats.connect(
        servers=servers,
        connect_timeout=2,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
    )
    js = nc.jetstream(timeout=2)
    try:
        try:
            await js.delete_stream(stream)
        except NotFoundError:
            pass
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[subject],
                storage=StorageType.FILE,
                num_replicas=1,
                duplicate_window=120.0,
            )
        )
        sub = await js.pull_subscribe(subject, durable="dr-crash", stream=stream)
        acked: dict[str, int] = {}
        ack_times: list[float] = []
        received: list[tuple[str, int]] = []
        recv_times: list[float] = []
        retries = 0
        stop_producer = asyncio.Event()
        stop_consumer = asyncio.Event()

        async def producer() -> None:
            nonlocal retries
            i = 0
            while not stop_producer.is_set():
                i += 1
                mid = f"m-{i}"
                while True:
                    try:
                        ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": mid}, timeout=1)
                        acked[mid] = ack.seq
                        ack_times.append(time.time())
                        break
                    except (TimeoutError, NatsError, OSError):
                        retries += 1
                        await asyncio.sleep(0.05)
                        if stop_producer.is_set():
                            return

        async def consumer() -> None:
            while not stop_consumer.is_set():
                try:
                    msgs = await sub.fetch(200, timeout=0.5)
                except (TimeoutError, NatsTimeout):
                    continue
                except (NatsError, OSError):
                    await asyncio.sleep(0.1)
                    continue
                for m in msgs:
                    received.append(((m.headers or {}).get("Nats-Msg-Id", ""), m.metadata.sequence.stream))
                    recv_times.append(time.time())
                    try:
                        await m.ack()
                    except (NatsError, OSError):
                        pass

        tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
        await poll_async(lambda: bool(acked), 30, "the first acknowledged publish")
        await asyncio.sleep(float(w["before_s"]))  # steady publishing before the fault, by design
        injected = faults.kill_daemon(platform, node["name"])
        rep.t_fault = injected.t
        rep.event(f"fault: kill -9 {node['name']}", injected.t)
        acked_before = len(acked)
        await asyncio.sleep(0.2)  # the process is gone; its supervisor restarts it
        await asyncio.to_thread(faults.restart_daemon, platform, recipe)
        rep.event(f"{node['name']} started again", time.time())
        monitor_url = endpoints.nats_monitor_urls(platform)[0]
        await asyncio.to_thread(
            poll,
            lambda: monitor(monitor_url, "/healthz?js-enabled-only=true") is not None,
            ctx.timeout("restart_s"),
            "nats-server to be healthy again",
        )
        await poll_async(
            lambda: bool(ack_times) and ack_times[-1] > injected.t,
            ctx.timeout("restart_s"),
            "the first acknowledged publish after the restart",
        )
        t_first = next(t for t in ack_times if t > injected.t)
        rep.event("first ack after the fault", t_first)
        await asyncio.sleep(float(w["after_s"]))  # publishing after recovery, by design
        stop_producer.set()
        await tasks[0]
        # the publish stall: the longest gap between acknowledgements from just before the fault on
        around = [t for t in ack_times if t >= injected.t - 1.0]
        rep.metrics["outage_s"] = round(
            max((b - a for a, b in zip(around, around[1:], strict=False)), default=0.0), 3
        )
        want = set(acked)
        await poll_async(
            lambda: want <= {m for m, _ in received},
            ctx.timeout("drain_s"),
            "the durable consumer to receive every acknowledged message",
        )
        stop_consumer.set()
        await tasks[1]
        rep.event("consumer drained", time.time())
        info = await js.stream_info(stream)
        audit = await js.pull_subscribe(
            subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        stored: dict[str, int] = {}
        while len(stored) < info.state.messages:
            try:
                batch = await audit.fetch(500, timeout=2)
            except (TimeoutError, NatsTimeout):
                break
            for m in batch:
                stored[(m.headers or {}).get("Nats-Msg-Id", "")] = m.metadata.sequence.stream
                await m.ack()
        await audit.unsubscribe()
        rep.series["acknowledged publishes"] = ack_times
        rep.series["consumer deliveries"] = recv_times
        return {
            "acked": acked,
            "received": received,
            "stored": stored,
            "retries": retries,
            "acked_before_fault": acked_before,
            "stream_messages": info.state.messages,
            "first_seq": info.state.first_seq,
            "last_seq": info.state.last_seq,
        }
    finally:
        try:
            await js.delete_stream(stream)
        except (NatsError, OSError, NotFoundError):
            pass
        await nc.close()
        if not daemon.read_state(node["name"], platform.run_dir).running:
            faults.restart_daemon(platform, recipe)  # never leave the broker down


async def poll_async(predicate: Any, timeout: float, what: str) -> None:
    """Await ``predicate()`` becoming true with backoff; DrillError after ``timeout``."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while not predicate():
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def run_repetition(ctx: DrillContext) -> Repetition:
    """One broker kill under publish + consume; checks on what survived."""
    rep = Repetition(ctx.index)
    state = asyncio.run(_drill(ctx, rep))
    rep.info["sync"] = sync_setting(endpoints.nats_monitor_urls(ctx.platform)[0])
    ctx.log(f"JetStream: {rep.info['sync']['meaning']}")
    ctx.before_checks(state)
    acked, stored, received = state["acked"], state["stored"], state["received"]
    lost = sorted(set(acked) - set(stored), key=lambda m: int(m.split("-")[1]))
    rep.metrics["lost_acked"] = len(lost)
    rep.info.update(
        {k: state[k] for k in ("retries", "acked_before_fault", "stream_messages", "first_seq", "last_seq")}
    )
    if "acked_present" in ctx.scenario.checks:
        rep.check(
            "acked_present",
            not lost,
            f"{len(lost)} of {len(acked)} acknowledged messages missing from "
            f"the stream after the restart ({state['retries']} publish retries)"
            + (f": {', '.join(lost[:10])}" if lost else ""),
            lost=lost[:100],
        )
    if "consumer_no_gaps" in ctx.scenario.checks:
        seqs = sorted({s for _, s in received})
        ids = [m for m, _ in received]
        dups = len(ids) - len(set(ids))
        expected = set(range(state["first_seq"], state["last_seq"] + 1)) if state["last_seq"] else set()
        gaps = sorted(expected - set(seqs))
        missing = sorted(set(acked) - set(ids))
        ok = not gaps and not missing
        rep.check(
            "consumer_no_gaps",
            ok,
            f"durable consumer got {len(set(ids))} distinct messages, "
            f"{dups} duplicate deliveries (at-least-once), {len(gaps)} sequence gaps, "
            f"{len(missing)} acknowledged messages never delivered",
            gaps=gaps[:50],
            duplicates=dups,
        )
    return rep
