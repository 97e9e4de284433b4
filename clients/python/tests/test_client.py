"""Unit tests of the library parts that need no service: python3 -m unittest discover -s tests"""

from __future__ import annotations

import asyncio
import logging
import unittest
from typing import List, Optional, Tuple

import grpc
import grpc.aio

from icmpfwd_client import Action, Request, SyntheticReply, Tls, Verdict, run_policy, synthetic_reply
from icmpfwd_client.client import decide, is_tls_failure, to_action, to_verdict
from icmpfwd_client.gen import forwarder_pb2 as pb
from icmpfwd_client.gen import forwarder_pb2_grpc as pb_grpc
from icmpfwd_client.policies import (
    MEASURE_PAYLOAD_BYTES,
    TokenBuckets,
    even_reply,
    every_nth,
    per_source_rate_limit,
    proxy_latency,
)
from icmpfwd_client.rtt import MEASUREMENT_MARKER, RttMeter, is_measurement_ping, parse_ping_rtt

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request(
    sequence: int = 1, traceparent: str = "", source: int = 1, payload: bytes = b"", v4: bool = False
) -> Request:
    return Request.from_proto(
        pb.EchoRequest(
            request_id=7,
            source=bytes([198, 18, 0, source]),
            destination=bytes([198, 18, 0, 2]) if v4 else bytes(15) + b"\x02",
            sequence=sequence,
            traceparent=traceparent,
            payload=payload,
        )
    )


class RequestTest(unittest.TestCase):
    def test_addresses_are_strings(self) -> None:
        r = request()
        self.assertEqual((r.source, r.destination), ("198.18.0.1", "::2"))

    def test_trace_id(self) -> None:
        self.assertEqual(request(traceparent=TRACEPARENT).trace_id, "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertIn("trace_id=4bf92f3577b34da6a3ce929d0e0e4736", request(traceparent=TRACEPARENT).describe())
        self.assertIsNone(request().trace_id)


class DecideTest(unittest.TestCase):
    def test_names_and_actions(self) -> None:
        self.assertEqual(to_action("reply"), Action.REPLY)
        self.assertEqual(to_action(Action.CONSUME), Action.CONSUME)

    def test_async_handler(self) -> None:
        async def h(r: Request) -> str:
            return "consume"

        self.assertEqual(asyncio.run(decide(h, request())), Verdict(Action.CONSUME))

    def test_handler_error_falls_through_and_logs_the_trace_id(self) -> None:
        def h(r: Request) -> str:
            raise RuntimeError("boom")

        with self.assertLogs("icmpfwd_client", logging.ERROR) as logs:
            self.assertEqual(asyncio.run(decide(h, request(traceparent=TRACEPARENT))), Verdict(Action.FALLTHROUGH))
        self.assertIn("4bf92f3577b34da6a3ce929d0e0e4736", logs.output[0])

    def test_bad_return_value_falls_through(self) -> None:
        with self.assertLogs("icmpfwd_client", logging.ERROR):
            self.assertEqual(asyncio.run(decide(lambda r: "maybe", request())), Verdict(Action.FALLTHROUGH))

    def test_verdict_carries_apply_to_flow_ms(self) -> None:
        self.assertEqual(to_verdict(Verdict("consume", apply_to_flow_ms=1500)), Verdict(Action.CONSUME, 1500))
        self.assertEqual(to_verdict("reply"), Verdict(Action.REPLY, 0, None))
        for bad in (-1, 2**32, 1.5, True):
            with self.assertRaises(ValueError):
                to_verdict(Verdict("reply", apply_to_flow_ms=bad))  # type: ignore[arg-type]

    def test_synthetic_reply_is_a_consume_with_a_delay_and_payload(self) -> None:
        v = synthetic_reply(request(), delay_ms=150, payload=b"abc")
        self.assertEqual(v, Verdict(Action.CONSUME, 0, SyntheticReply(150, b"abc")))
        self.assertEqual(to_verdict(v), v)

    def test_synthetic_reply_with_reply_falls_through(self) -> None:
        with self.assertLogs("icmpfwd_client", logging.ERROR) as logs:
            v = asyncio.run(decide(lambda r: Verdict("reply", synthetic_reply=SyntheticReply(10)), request()))
        self.assertEqual(v, Verdict(Action.FALLTHROUGH))
        self.assertIn("a synthetic reply needs consume, not reply", logs.output[0])


class PolicyTest(unittest.TestCase):
    def test_even_reply(self) -> None:
        self.assertEqual([even_reply(request(s)) for s in (1, 2)], ["consume", "reply"])

    def test_every_nth(self) -> None:
        p = every_nth(3)
        self.assertEqual([p(request()) for _ in range(6)], ["consume", "consume", "reply"] * 2)

    def test_per_source_rate_limit_with_no_refill_answers_burst_per_source(self) -> None:
        p = per_source_rate_limit(rate=0, burst=3, now=lambda: 0.0)
        self.assertEqual([p(request(source=1)) for _ in range(5)], ["reply"] * 3 + ["consume"] * 2)
        self.assertEqual([p(request(source=3)) for _ in range(4)], ["reply"] * 3 + ["consume"])

    def test_token_buckets_refill_at_rate(self) -> None:
        now = [0.0]
        b = TokenBuckets(rate=2, burst=3, now=lambda: now[0])
        self.assertEqual([b.take("a") for _ in range(4)], [True, True, True, False])
        now[0] = 0.5  # one token back
        self.assertEqual([b.take("a"), b.take("a")], [True, False])
        now[0] = 100  # capped at the burst
        self.assertEqual([b.take("a") for _ in range(4)], [True, True, True, False])

    def test_proxy_latency_fixed_delay(self) -> None:
        v = proxy_latency(250)(request())
        self.assertEqual(v, Verdict(Action.CONSUME, 0, SyntheticReply(250)))


class ScriptedPing:
    """A `ping` whose every call waits for the test to settle it."""

    def __init__(self) -> None:
        self.calls: List[Tuple[List[str], "asyncio.Future[Tuple[int, str, str]]"]] = []

    async def __call__(self, args: List[str]) -> Tuple[int, str, str]:
        fut: "asyncio.Future[Tuple[int, str, str]]" = asyncio.get_running_loop().create_future()
        self.calls.append((args, fut))
        return await fut

    @staticmethod
    def ok(ms: float) -> Tuple[int, str, str]:
        return 0, f"PING x 56(84) bytes of data.\n64 bytes from x: icmp_seq=1 ttl=64 time={ms} ms\n", ""

    async def wait(self, n: int) -> None:
        for _ in range(200):
            if len(self.calls) >= n:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{len(self.calls)} pings, want {n}")


class RttTest(unittest.TestCase):
    def test_parses_iputils_ping(self) -> None:
        out = "PING 198.18.0.2 (198.18.0.2) 56(84) bytes of data.\n64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=0.043 ms\n"
        self.assertEqual(parse_ping_rtt(out), 0.043)
        self.assertEqual(parse_ping_rtt("rtt min/avg/max/mdev = 12.5/12.5/12.5/0.000 ms"), 12.5)
        self.assertIsNone(parse_ping_rtt("1 packets transmitted, 0 received, 100% packet loss, time 0ms"))

    def test_ping_arguments_by_family_with_the_loop_marker(self) -> None:
        m = RttMeter(run=ScriptedPing())
        marker = MEASUREMENT_MARKER.hex()
        self.assertEqual(m.args("198.18.0.2"), ["-4", "-c", "1", "-n", "-W", "1", "-p", marker, "198.18.0.2"])
        self.assertEqual(m.args("fd00:1::2"), ["-6", "-c", "1", "-n", "-W", "1", "-p", marker, "fd00:1::2"])
        self.assertEqual(len(MEASUREMENT_MARKER), 16)

    def test_one_measurement_per_destination_cached_for_cache_ms(self) -> None:
        async def go() -> None:
            now = [0.0]
            ping = ScriptedPing()
            m = RttMeter(cache_ms=1000, run=ping, now=lambda: now[0])
            three = asyncio.gather(*(m.measure("198.18.0.2") for _ in range(3)))
            await ping.wait(1)
            ping.calls[0][1].set_result(ping.ok(7.5))
            self.assertEqual(await three, [7.5, 7.5, 7.5])
            now[0] = 0.999
            self.assertEqual(await m.measure("198.18.0.2"), 7.5)
            now[0] = 1.0
            again = asyncio.ensure_future(m.measure("198.18.0.2"))
            await ping.wait(2)
            ping.calls[1][1].set_result(ping.ok(9))
            self.assertEqual(await again, 9)
            self.assertEqual((m.stats.pings, m.stats.shared, m.stats.failures), (2, 3, 0))

        asyncio.run(go())

    def test_at_most_max_concurrent_pings_and_max_queued_waiting(self) -> None:
        async def go() -> None:
            ping = ScriptedPing()
            m = RttMeter(max_concurrent=2, max_queued=1, run=ping)
            r = [asyncio.ensure_future(m.measure(f"198.18.0.{i}")) for i in (11, 12, 13)]
            await ping.wait(2)
            self.assertIsNone(await m.measure("198.18.0.14"))
            self.assertEqual(m.stats.overflows, 1)
            await asyncio.sleep(0.02)
            self.assertEqual(len(ping.calls), 2)
            ping.calls[0][1].set_result(ping.ok(1))
            await ping.wait(3)
            ping.calls[1][1].set_result(ping.ok(2))
            ping.calls[2][1].set_result(ping.ok(3))
            self.assertEqual(await asyncio.gather(*r), [1, 2, 3])

        asyncio.run(go())

    def test_a_failed_ping_is_none_logged_and_cached(self) -> None:
        async def go() -> None:
            ping = ScriptedPing()
            m = RttMeter(run=ping)
            with self.assertLogs("icmpfwd_client.rtt", logging.WARNING) as logs:
                r = asyncio.ensure_future(m.measure("198.18.0.9"))
                await ping.wait(1)
                ping.calls[0][1].set_result((1, "1 packets transmitted, 0 received", ""))
                self.assertIsNone(await r)
            self.assertIsNone(await m.measure("198.18.0.9"))
            self.assertEqual((len(ping.calls), m.stats.failures), (1, 1))
            self.assertIn("measurement ping to 198.18.0.9 failed; using the fixed delay", logs.output[0])

            async def missing(args: List[str]) -> Tuple[int, str, str]:
                raise FileNotFoundError("ping")

            with self.assertLogs("icmpfwd_client.rtt", logging.WARNING) as logs:
                self.assertIsNone(await RttMeter(run=missing).measure("198.18.0.9"))
            self.assertIn("failed; using the fixed delay: ping", logs.output[0])

        asyncio.run(go())

    def test_proxy_latency_measured_replies_one_rtt_after_the_request(self) -> None:
        async def go() -> None:
            now = [0.0]
            ping = ScriptedPing()
            p = proxy_latency(500, RttMeter(run=ping), now=lambda: now[0])
            v = p(request(v4=True))
            assert isinstance(v, Verdict) and v.synthetic_reply is not None
            self.assertEqual(v.action, Action.CONSUME)
            delay = asyncio.ensure_future(v.synthetic_reply.delay_ms)  # type: ignore[arg-type]
            await ping.wait(1)
            self.assertEqual(ping.calls[0][0][-1], "198.18.0.2")
            now[0] = 0.030  # the measurement took 30 ms of a 40 ms RTT: 10 ms left
            ping.calls[0][1].set_result(ping.ok(40))
            self.assertAlmostEqual(await delay, 10)
            v2 = p(request(v4=True))
            assert isinstance(v2, Verdict) and v2.synthetic_reply is not None
            self.assertAlmostEqual(await v2.synthetic_reply.delay_ms, 40)  # type: ignore[misc]
            # A failure: the fixed delay.
            v3 = p(Request.from_proto(pb.EchoRequest(request_id=9, source=bytes(4), destination=bytes([198, 18, 0, 3]))))
            assert isinstance(v3, Verdict) and v3.synthetic_reply is not None
            d3 = asyncio.ensure_future(v3.synthetic_reply.delay_ms)  # type: ignore[arg-type]
            await ping.wait(2)
            with self.assertLogs("icmpfwd_client.rtt", logging.WARNING):
                ping.calls[1][1].set_result((2, "", "ping: connect: Network is unreachable"))
                self.assertAlmostEqual(await d3, 500)

        asyncio.run(go())

    def test_proxy_latency_answers_its_own_looped_measurement_ping_and_discards_it(self) -> None:
        async def go() -> None:
            ping = ScriptedPing()
            meter = RttMeter(run=ping)
            p = proxy_latency(250, meter, now=lambda: 0.0)
            v = p(request(v4=True))
            assert isinstance(v, Verdict) and v.synthetic_reply is not None
            delay = asyncio.ensure_future(v.synthetic_reply.delay_ms)  # type: ignore[arg-type]
            await ping.wait(1)
            # iputils: a 16-byte timestamp, then the -p pattern.
            payload = bytes([0xEE] * 16) + MEASUREMENT_MARKER + bytes(24)
            self.assertTrue(is_measurement_ping(payload))
            self.assertFalse(is_measurement_ping(bytes(56)))
            self.assertEqual(p(request(v4=True, payload=payload)), "reply")
            with self.assertLogs("icmpfwd_client.rtt", logging.WARNING) as logs:
                ping.calls[0][1].set_result(ping.ok(0.05))
                self.assertEqual(await delay, 250)
            self.assertIn("(a routing loop)", logs.output[0])
            self.assertEqual((meter.stats.pings, meter.stats.loops, meter.stats.failures), (1, 1, 0))
            self.assertEqual(MEASURE_PAYLOAD_BYTES, 64)

        asyncio.run(go())


class ScriptedService(pb_grpc.EchoForwarderServicer):
    """Welcomes, sends the given requests in one batch, records what the client sends (with the
    time it arrived) and ends the stream on Drain."""

    def __init__(self, requests: List[pb.EchoRequest]) -> None:
        self.requests = requests
        self.received: List[Tuple[float, pb.ClientMessage]] = []

    async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        async for msg in request_iterator:
            self.received.append((loop.time(), msg))
            kind = msg.WhichOneof("message")
            if kind == "hello":
                yield pb.ServerMessage(welcome=pb.Welcome(protocol_version=1, session_id="s1", max_in_flight=16))
                yield pb.ServerMessage(requests=pb.EchoRequestBatch(requests=self.requests))
            elif kind == "drain":
                return

    def of(self, kind: str) -> List[Tuple[float, pb.ClientMessage]]:
        return [(t, m) for t, m in self.received if m.WhichOneof("message") == kind]


def echo(request_id: int) -> pb.EchoRequest:
    return pb.EchoRequest(
        request_id=request_id, source=bytes([198, 18, 0, 1]), destination=bytes([198, 18, 0, 2]), sequence=request_id
    )


async def with_service(
    requests: List[pb.EchoRequest], handler, until, payload_bytes: int = 0, tls: Optional[Tls] = None
):  # type: ignore[no-untyped-def]
    """Runs run_policy against a ScriptedService until `until(service)` holds, then stops it."""
    svc = ScriptedService(requests)
    server = grpc.aio.server()
    pb_grpc.add_EchoForwarderServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_policy(handler, target=f"127.0.0.1:{port}", stop=stop, payload_bytes=payload_bytes, tls=tls)
    )
    try:
        for _ in range(400):
            if until(svc):
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError(f"timed out; received {[m.WhichOneof('message') for _, m in svc.received]}")
        stop.set()
        summary = await asyncio.wait_for(task, 10)
    finally:
        await server.stop(None)
    return svc, summary


class SessionTest(unittest.TestCase):
    def test_hello_asks_for_payload_bytes_and_verdicts_carry_apply_to_flow_ms(self) -> None:
        svc, summary = asyncio.run(
            with_service(
                [echo(1), echo(2)],
                lambda r: Verdict("consume", apply_to_flow_ms=2000) if r.sequence == 1 else "reply",
                lambda s: s.of("verdicts"),
                payload_bytes=64,
            )
        )
        self.assertEqual(svc.of("hello")[0][1].hello.payload_bytes, 64)
        (_, m), = svc.of("verdicts")
        self.assertEqual(
            [(v.request_id, v.action, v.apply_to_flow_ms) for v in m.verdicts.verdicts],
            [(1, pb.ACTION_CONSUME, 2000), (2, pb.ACTION_REPLY, 0)],
        )
        self.assertEqual((summary.verdicts["consume"], summary.verdicts["reply"], summary.synthetic), (1, 1, 0))

    def test_synthetic_reply_follows_the_consume_verdict_after_the_delay(self) -> None:
        svc, summary = asyncio.run(
            with_service(
                [echo(1), echo(2)],
                lambda r: synthetic_reply(r, delay_ms=150, payload=b"pong" if r.sequence == 2 else None),
                lambda s: len(s.of("synthetic_reply")) == 2,
            )
        )
        (t_verdict, v), = svc.of("verdicts")
        self.assertEqual([x.action for x in v.verdicts.verdicts], [pb.ACTION_CONSUME] * 2)
        syn = svc.of("synthetic_reply")
        self.assertEqual([m.synthetic_reply.request_id for _, m in syn], [1, 2])
        self.assertEqual([m.synthetic_reply.HasField("payload") for _, m in syn], [False, True])
        self.assertEqual(syn[1][1].synthetic_reply.payload, b"pong")
        for t, _ in syn:
            self.assertGreaterEqual(t - t_verdict, 0.14)
        self.assertEqual(summary.synthetic, 2)
        self.assertEqual(
            summary.line("proxy-latency"),
            "summary policy=proxy-latency decided=2 reply=0 consume=2 fallthrough=0 errors=0 observed=0 sessions=1",
        )

    def test_synthetic_reply_with_an_awaitable_delay_waits_for_it(self) -> None:
        async def go() -> Tuple[ScriptedService, float, float]:
            gate: "asyncio.Future[float]" = asyncio.get_running_loop().create_future()
            released = [0.0]

            async def delay() -> float:
                v = await gate
                released[0] = asyncio.get_running_loop().time()
                return v

            async def release() -> None:
                await asyncio.sleep(0.1)
                gate.set_result(20)

            asyncio.ensure_future(release())
            svc, _ = await with_service(
                [echo(1)], lambda r: synthetic_reply(r, delay_ms=delay()), lambda s: s.of("synthetic_reply")
            )
            return svc, released[0], svc.of("synthetic_reply")[0][0]

        svc, released, sent = asyncio.run(go())
        self.assertGreater(released, 0)
        self.assertGreaterEqual(sent - released, 0.019)

    def test_drain_sends_the_promised_synthetic_replies_first(self) -> None:
        async def go() -> ScriptedService:
            svc, summary = await with_service(
                [echo(1)], lambda r: synthetic_reply(r, delay_ms=200), lambda s: s.of("verdicts")
            )
            self.assertEqual(summary.synthetic, 1)
            return svc

        svc = asyncio.run(go())
        kinds = [m.WhichOneof("message") for _, m in svc.received]
        self.assertEqual(kinds, ["hello", "verdicts", "synthetic_reply", "drain"])


class TlsTest(unittest.TestCase):
    def test_tls_failures_are_recognised(self) -> None:
        self.assertTrue(
            is_tls_failure(
                "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50051: "
                "Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
            )
        )
        self.assertFalse(is_tls_failure("failed to connect to all addresses; last error: connection refused"))

    def test_server_name_override(self) -> None:
        self.assertEqual(Tls(server_name="localhost").options(), [("grpc.ssl_target_name_override", "localhost")])
        self.assertEqual(Tls().options(), [])
        with self.assertRaises(ValueError):
            Tls.from_files(cert="client.pem")


if __name__ == "__main__":
    unittest.main()
