"""Unit tests of the library parts that need no service: python3 -m unittest discover -s tests"""

from __future__ import annotations

import asyncio
import logging
import unittest

from icmpfwd_client import Action, Request
from icmpfwd_client.client import decide, to_action
from icmpfwd_client.gen import forwarder_pb2 as pb
from icmpfwd_client.policies import even_reply, every_nth

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request(sequence: int = 1, traceparent: str = "") -> Request:
    return Request.from_proto(
        pb.EchoRequest(
            request_id=7,
            source=bytes([198, 18, 0, 1]),
            destination=bytes(15) + b"\x02",
            sequence=sequence,
            traceparent=traceparent,
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

        self.assertEqual(asyncio.run(decide(h, request())), Action.CONSUME)

    def test_handler_error_falls_through_and_logs_the_trace_id(self) -> None:
        def h(r: Request) -> str:
            raise RuntimeError("boom")

        with self.assertLogs("icmpfwd_client", logging.ERROR) as logs:
            self.assertEqual(asyncio.run(decide(h, request(traceparent=TRACEPARENT))), Action.FALLTHROUGH)
        self.assertIn("4bf92f3577b34da6a3ce929d0e0e4736", logs.output[0])

    def test_bad_return_value_falls_through(self) -> None:
        with self.assertLogs("icmpfwd_client", logging.ERROR):
            self.assertEqual(asyncio.run(decide(lambda r: "maybe", request())), Action.FALLTHROUGH)


class PolicyTest(unittest.TestCase):
    def test_even_reply(self) -> None:
        self.assertEqual([even_reply(request(s)) for s in (1, 2)], ["consume", "reply"])

    def test_every_nth(self) -> None:
        p = every_nth(3)
        self.assertEqual([p(request()) for _ in range(6)], ["consume", "consume", "reply"] * 2)


if __name__ == "__main__":
    unittest.main()
