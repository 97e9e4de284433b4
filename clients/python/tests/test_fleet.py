"""Target lists and dns:/// fleets: one session per service, sessions added and drained as the
resolver's answer changes (an injected resolver, real grpc.aio services on 127.0.0.1/127.0.0.2)."""

from __future__ import annotations

import asyncio
import unittest
from typing import Callable, List

import grpc.aio

from icmpfwd_client import AuthError, HelloRejected, run_policy
from icmpfwd_client.gen import forwarder_pb2_grpc as pb_grpc
from icmpfwd_client.targets import DnsTarget, parse_targets
from test_client import ScriptedService, echo


class ParseTest(unittest.TestCase):
    def test_elements(self) -> None:
        self.assertEqual(
            parse_targets("127.0.0.1:1, [fd00::1]:2,unix:/run/s.sock,dns:///icmpfwd.example:50051"),
            ["127.0.0.1:1", "[fd00::1]:2", "unix:/run/s.sock", DnsTarget("icmpfwd.example", 50051)],
        )

    def test_bad_elements_are_named(self) -> None:
        for bad, why in [
            ("a:1,", "an empty element"),
            ("host", "want host:port"),
            ("host:0", "bad port '0'"),
            ("fd00::1:5", "want host:port"),
            ("[fd00::1]5", "want [v6addr]:port"),
            ("dns://x:1", "want dns:///name:port"),
            ("dns:///x", "want host:port"),
            ("unix:", "unix: needs a path"),
        ]:
            with self.assertRaises(ValueError) as c:
                parse_targets(bad)
            self.assertIn(why, str(c.exception), bad)

    def test_dns_address_brackets_ipv6(self) -> None:
        d = DnsTarget("x", 7)
        self.assertEqual((d.address("198.18.0.1"), d.address("fd00::1")), ("198.18.0.1:7", "[fd00::1]:7"))


class Services:
    """Scripted services on 127.0.0.1 and 127.0.0.2, all on one port (as behind one DNS name)."""

    def __init__(self) -> None:
        self.by_ip: dict[str, ScriptedService] = {}
        self.servers: List[grpc.aio.Server] = []
        self.port = 0

    async def start(self, ips: List[str], make: Callable[[], ScriptedService] = lambda: ScriptedService([echo(1)])) -> None:
        for ip in ips:
            svc = make()
            server = grpc.aio.server()
            pb_grpc.add_EchoForwarderServicer_to_server(svc, server)
            self.port = server.add_insecure_port(f"{ip}:{self.port}")
            await server.start()
            self.by_ip[ip] = svc
            self.servers.append(server)

    def kinds(self, ip: str) -> List[str]:
        return [m.WhichOneof("message") for _, m in self.by_ip[ip].received]

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop(None)


async def until(pred: Callable[[], bool], what: str) -> None:
    for _ in range(600):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class FleetTest(unittest.TestCase):
    def test_a_target_list_opens_one_session_per_service(self) -> None:
        async def go() -> None:
            s = Services()
            await s.start(["127.0.0.1", "127.0.0.2"])
            stop = asyncio.Event()
            task = asyncio.ensure_future(
                run_policy(lambda r: "reply", target=f"127.0.0.1:{s.port},127.0.0.2:{s.port}", stop=stop)
            )
            try:
                await until(lambda: all("verdicts" in s.kinds(ip) for ip in s.by_ip), "a verdict from each")
                stop.set()
                summary = await asyncio.wait_for(task, 10)
            finally:
                await s.stop()
            self.assertEqual((summary.sessions, summary.verdicts["reply"]), (2, 2))
            for ip in s.by_ip:
                self.assertEqual(s.kinds(ip), ["hello", "verdicts", "drain"])

        asyncio.run(go())

    def test_dns_sessions_follow_the_resolved_addresses(self) -> None:
        async def go() -> None:
            s = Services()
            await s.start(["127.0.0.1", "127.0.0.2"])
            answers = [["127.0.0.1", "127.0.0.2"]]
            asked: List[str] = []

            async def resolver(name: str) -> List[str]:
                asked.append(name)
                if answers[0] == ["fail"]:
                    raise OSError("SERVFAIL")
                return answers[0]

            stop = asyncio.Event()
            task = asyncio.ensure_future(
                run_policy(
                    lambda r: "consume", target=f"dns:///svc.test:{s.port}", stop=stop,
                    resolver=resolver, resolve_interval_ms=50,
                )
            )
            try:
                await until(lambda: all("verdicts" in s.kinds(ip) for ip in s.by_ip), "a session on each address")
                # 127.0.0.1 goes away: its session is drained, the other one stays.
                answers[0] = ["127.0.0.2"]
                await until(lambda: "drain" in s.kinds("127.0.0.1"), "127.0.0.1 drained")
                self.assertEqual(s.kinds("127.0.0.2"), ["hello", "verdicts"])
                # A failed resolution keeps what there is.
                answers[0] = ["fail"]
                n = len(asked)
                await until(lambda: len(asked) >= n + 2, "two failed resolutions")
                self.assertEqual(s.kinds("127.0.0.2"), ["hello", "verdicts"])
                # It comes back: a new session.
                answers[0] = ["127.0.0.2", "127.0.0.1"]
                await until(lambda: s.kinds("127.0.0.1").count("hello") == 2, "127.0.0.1 again")
                stop.set()
                summary = await asyncio.wait_for(task, 10)
            finally:
                await s.stop()
            self.assertEqual(set(asked), {"svc.test"})
            self.assertEqual(summary.sessions, 3)
            self.assertEqual(s.kinds("127.0.0.2"), ["hello", "verdicts", "drain"])

        asyncio.run(go())

    def test_a_refused_credential_on_one_service_drains_the_others_and_raises(self) -> None:
        class Refusing(ScriptedService):
            async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
                yield  # pragma: no cover

        async def go() -> None:
            good, bad = Services(), Services()
            await good.start(["127.0.0.1"])
            await bad.start(["127.0.0.2"], lambda: Refusing([]))
            try:
                with self.assertRaises(AuthError) as c:
                    await asyncio.wait_for(
                        run_policy(lambda r: "reply", target=f"127.0.0.1:{good.port},127.0.0.2:{bad.port}"), 10
                    )
                self.assertIn("UNAUTHENTICATED: bad token", str(c.exception))
            finally:
                await good.stop()
                await bad.stop()

        asyncio.run(go())

    def test_a_refused_hello_raises_hello_rejected(self) -> None:
        class Rejecting(ScriptedService):
            async def Connect(self, request_iterator, context):  # type: ignore[no-untyped-def]
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "client_name: too long")
                yield  # pragma: no cover

        async def go() -> None:
            s = Services()
            await s.start(["127.0.0.1"], lambda: Rejecting([]))
            try:
                with self.assertRaises(HelloRejected):
                    await asyncio.wait_for(run_policy(lambda r: "reply", target=f"127.0.0.1:{s.port}"), 10)
            finally:
                await s.stop()

        asyncio.run(go())


if __name__ == "__main__":
    unittest.main()
