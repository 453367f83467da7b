"""The balancer's network faults: which requests a fault picks (seeded), what it does to them (latency,
abort, reset, partition), when it ends, and the one-line error for every bad value. In-process: a real
`Balancer` on asyncio with a tiny upstream, no subprocess."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest

from harness.errors import ConfigError
from harness.platforms.local.balancer import Balancer, apply_control
from harness.platforms.local.http1 import json_response, parse_head, read_head, request_body_length
from harness.platforms.local.netfaults import FAULT_HEADER, FaultTable, NetworkFault, parse_fault
from harness.platforms.local.routing import Router


def _fault(**fields) -> NetworkFault:
    return parse_fault({"duration_s": 60, **fields})


def _abort_pattern(seed: int, percent: float, count: int) -> list[bool]:
    table = FaultTable()
    table.apply(_fault(kind="abort", percent=percent, seed=seed))
    return [table.decide().abort_status is not None for _ in range(count)]


# ----- the fault table ---------------------------------------------------------------------------


def test_a_seed_picks_the_same_requests_again_and_the_share_follows_the_percent():
    first, again, other = _abort_pattern(7, 20, 2000), _abort_pattern(7, 20, 2000), _abort_pattern(8, 20, 2000)
    assert first == again
    assert first != other
    assert 0.18 <= sum(first) / 2000 <= 0.22
    assert all(_abort_pattern(1, 100, 200)) and sum(_abort_pattern(1, 0.5, 2000)) < 40


def test_each_kind_does_its_own_thing_and_a_reset_wins_over_an_abort():
    table = FaultTable()
    table.apply(_fault(kind="latency", delay_ms=250))
    assert table.decide().delay_s == 0.25 and table.decide().abort_status is None
    table.apply(_fault(kind="abort", status=429, id="a-1"))
    decision = table.decide()
    assert (decision.delay_s, decision.abort_status, decision.abort_id, decision.reset) == (0.25, 429, "a-1", False)
    table.apply(_fault(kind="reset"))
    decision = table.decide()
    assert decision.reset and decision.abort_status is None and decision.delay_s == 0.25
    assert table.stats()["applied"] == {"latency": 4, "abort": 1, "reset": 1}  # four requests decided


def test_a_fault_ends_by_itself_after_its_duration():
    now = [100.0]
    table = FaultTable(clock=lambda: now[0])
    table.apply(_fault(kind="abort", duration_s=5))
    table.apply(_fault(kind="partition", replica="r-0", duration_s=2))
    assert table.decide().abort_status == 503 and table.cut_off() == {"r-0"}
    now[0] = 101.999
    assert table.cut_off() == {"r-0"} and table.stats()["active"][1]["remaining_s"] == pytest.approx(0.001)
    now[0] = 102.0
    assert table.cut_off() == frozenset() and table.decide().abort_status == 503
    now[0] = 105.0
    assert table.decide().abort_status is None and not table.active
    assert table.stats() == {"active": [], "expired": 2, "applied": {"latency": 0, "abort": 2, "reset": 0}}


def test_a_new_fault_replaces_the_one_in_its_slot_and_clearing_ends_by_id_or_all():
    table = FaultTable()
    table.apply(_fault(kind="latency", delay_ms=10, id="l-1"))
    table.apply(_fault(kind="latency", delay_ms=20, id="l-2"))
    table.apply(_fault(kind="partition", replica="r-0", id="p-1"))
    table.apply(_fault(kind="partition", replica="r-1", id="p-2"))
    assert [f["id"] for f in table.stats()["active"]] == ["l-2", "p-1", "p-2"]
    assert table.decide().delay_s == 0.02 and table.cut_off() == {"r-0", "r-1"}
    assert table.clear(["p-1", "nope"]) == ["p-1"] and table.cut_off() == {"r-1"}
    assert sorted(table.clear()) == ["l-2", "p-2"] and not table.active and table.decide().delay_s == 0


@pytest.mark.parametrize("data, field", [
    ({}, "kind"),
    ({"kind": "jitter", "duration_s": 5}, "kind"),
    ({"kind": {"a": 1}, "duration_s": 5}, "kind"),
    ({"kind": "abort"}, "duration_s"),
    ({"kind": "abort", "duration_s": 0}, "duration_s"),
    ({"kind": "abort", "duration_s": 3601}, "duration_s"),
    ({"kind": "abort", "duration_s": "5"}, "duration_s"),
    ({"kind": "abort", "duration_s": True}, "duration_s"),
    ({"kind": "abort", "duration_s": math.nan}, "duration_s"),
    ({"kind": "abort", "duration_s": 5, "percent": 150}, "percent"),
    ({"kind": "abort", "duration_s": 5, "percent": 0}, "percent"),
    ({"kind": "abort", "duration_s": 5, "status": 200}, "status"),
    ({"kind": "abort", "duration_s": 5, "status": "503"}, "status"),
    ({"kind": "abort", "duration_s": 5, "delay_ms": 5}, "delay_ms"),
    ({"kind": "latency", "duration_s": 5}, "delay_ms"),
    ({"kind": "latency", "duration_s": 5, "delay_ms": [1]}, "delay_ms"),
    ({"kind": "latency", "duration_s": 5, "delay_ms": 60_001}, "delay_ms"),
    ({"kind": "latency", "duration_s": 5, "delay_ms": 1, "seed": -1}, "seed"),
    ({"kind": "reset", "duration_s": 5, "status": 503}, "status"),
    ({"kind": "partition", "duration_s": 5}, "replica"),
    ({"kind": "partition", "duration_s": 5, "replica": ""}, "replica"),
    ({"kind": "partition", "duration_s": 5, "replica": "r-0", "percent": 50}, "percent"),
    ({"kind": "abort", "duration_s": 5, "id": 7}, "id"),
    (["abort"], "fault"),
])
def test_a_bad_value_is_one_line_naming_the_field_and_the_value(data, field):
    with pytest.raises(ConfigError) as caught:
        parse_fault(data)
    message = str(caught.value)
    assert caught.value.field == field and "\n" not in message
    assert message.startswith(f"{field}=")
    if isinstance(data, dict) and field in data:
        assert repr(data[field])[:20] in message


# ----- the balancer with the faults ------------------------------------------------------------------


async def _upstream(seen: list[str], name: str) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (raw := await read_head(reader)) is not None:
                length = request_body_length(parse_head(raw))
                if length:
                    await reader.readexactly(length)
                seen.append(name)
                writer.write(json_response(200, {"replica": name}))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _request(port: int) -> tuple[str | int, dict[str, str], float]:
    """Send one POST; return (status, or "reset"/"closed" when no answer came), headers, seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /v2/models/m/infer HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
    try:
        await writer.drain()
        raw = await read_head(reader)
        if raw is None:
            return "closed", {}, time.monotonic() - started
        head = parse_head(raw)
        await reader.readexactly(int(head.get(b"content-length") or 0))
        headers = {k.decode().lower(): v.decode() for k, v in head.headers}
        return int(head.start[1]), headers, time.monotonic() - started
    except ConnectionResetError:
        return "reset", {}, time.monotonic() - started
    finally:
        writer.close()


class _Stage:
    """A balancer in front of upstreams "r-0" (and "r-1"), all on this loop."""

    def __init__(self, faults: FaultTable, replicas: int = 1) -> None:
        self.faults = faults
        self.replicas = replicas
        self.seen: list[str] = []

    async def __aenter__(self) -> "_Stage":
        self.upstreams = [await _upstream(self.seen, f"r-{i}") for i in range(self.replicas)]
        self.router = Router("multi-active")
        apply_control({"backends": [{"name": f"r-{i}", "host": "127.0.0.1", "port": s.sockets[0].getsockname()[1],
                                     "ready": True} for i, s in enumerate(self.upstreams)]}, self.router, self.faults)
        self.balancer = Balancer(self.router, retry_on_connect_error=True, connect_timeout_s=1.0, request_timeout_s=5.0,
                                 faults=self.faults)
        self.server = await asyncio.start_server(self.balancer.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for server in (self.server, *self.upstreams):
            server.close()
        for backend in self.router.backends:
            backend.drop_idle()

    def control(self, message: object) -> None:
        apply_control(message, self.router, self.faults)


def test_an_abort_is_answered_by_the_balancer_and_picks_the_seeded_requests():
    async def scenario() -> None:
        async with _Stage(FaultTable()) as stage:
            stage.control({"fault": {"kind": "abort", "percent": 30, "status": 429, "duration_s": 60, "seed": 11, "id": "a-1"}})
            answers = [await _request(stage.port) for _ in range(60)]
            aborted = [status == 429 for status, _, _ in answers]
            assert aborted == _abort_pattern(11, 30, 60)
            assert {status for status, _, _ in answers} == {200, 429}
            assert all(headers.get(FAULT_HEADER) == "abort" and "x-harness-replica" not in headers
                       for status, headers, _ in answers if status == 429)
            assert len(stage.seen) == 60 - sum(aborted)  # an aborted request never reaches a replica
            assert stage.balancer.stats()["faults"]["applied"]["abort"] == sum(aborted)

    asyncio.run(scenario())


def test_a_reset_closes_the_connection_without_an_answer():
    async def scenario() -> None:
        async with _Stage(FaultTable()) as stage:
            stage.control({"fault": {"kind": "reset", "duration_s": 60}})
            assert [(await _request(stage.port))[0] for _ in range(3)] == ["reset"] * 3
            assert stage.seen == []
            stage.control({"clear_faults": None})
            assert (await _request(stage.port))[0] == 200 and stage.seen == ["r-0"]

    asyncio.run(scenario())


def test_latency_is_added_before_forwarding_and_clearing_ends_it():
    async def scenario() -> None:
        async with _Stage(FaultTable()) as stage:
            stage.control({"fault": {"kind": "latency", "delay_ms": 150, "duration_s": 60, "id": "l-1"}})
            delayed = [await _request(stage.port) for _ in range(3)]
            assert [status for status, _, _ in delayed] == [200] * 3
            assert min(elapsed for _, _, elapsed in delayed) >= 0.15
            stage.control({"clear_faults": ["l-1"]})
            assert (await _request(stage.port))[0] == 200
            assert stage.balancer.stats()["faults"]["applied"]["latency"] == 3  # the request after the clear: none

    asyncio.run(scenario())


def test_a_partitioned_replica_gets_no_new_request_and_traffic_returns_when_the_fault_ends():
    now = [0.0]

    async def scenario() -> None:
        async with _Stage(FaultTable(clock=lambda: now[0]), replicas=2) as stage:
            stage.control({"fault": {"kind": "partition", "replica": "r-0", "duration_s": 5}})
            for _ in range(10):
                assert (await _request(stage.port))[0] == 200
            assert stage.seen == ["r-1"] * 10
            stage.control({"fault": {"kind": "partition", "replica": "r-1", "duration_s": 5}})
            status, _, _ = await _request(stage.port)  # both cut off: as with no Ready replica
            assert status == 503 and len(stage.seen) == 10
            now[0] = 5.0  # both faults' time is up
            for _ in range(10):
                assert (await _request(stage.port))[0] == 200
            assert set(stage.seen[10:]) == {"r-0", "r-1"}

    asyncio.run(scenario())


def test_a_bad_control_line_changes_nothing_and_breaks_nothing(capsys):
    async def scenario() -> None:
        async with _Stage(FaultTable()) as stage:
            for message in (["fault"], {"fault": {"kind": "abort", "duration_s": -1}}, {"fault": "abort"},
                            {"clear_faults": "all"}, {"clear_faults": 5}):
                stage.control(message)
            assert not stage.faults.active and (await _request(stage.port))[0] == 200

    asyncio.run(scenario())
    assert "ignoring fault: duration_s=-1" in capsys.readouterr().err


def test_the_stats_path_is_never_faulted_and_shows_the_faults():
    async def scenario() -> None:
        async with _Stage(FaultTable()) as stage:
            stage.control({"fault": {"kind": "reset", "duration_s": 60, "id": "r-1"}})
            reader, writer = await asyncio.open_connection("127.0.0.1", stage.port)
            writer.write(b"GET /_balancer/stats HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            head = parse_head(await read_head(reader))
            stats = json.loads(await reader.readexactly(int(head.get(b"content-length"))))
            writer.close()
            assert head.start[1] == b"200"
            assert [(f["id"], f["kind"], f["percent"]) for f in stats["faults"]["active"]] == [("r-1", "reset", 100.0)]

    asyncio.run(scenario())
