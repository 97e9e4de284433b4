"""The CLI contract (docs/cli-contract.md) as far as it needs no service: flags in both
spellings, env, usage errors as one line and exit 2, the JSON log line."""

from __future__ import annotations

import io
import json
import logging
import os
import unittest
from contextlib import redirect_stderr
from unittest import mock

from icmpfwd_client import cli, deps, logs


class ParseTest(unittest.TestCase):
    def test_both_spellings_and_flags_around_the_policy(self) -> None:
        a = cli.parser().parse_args(["--n=3", "every-nth", "--target", "unix:/s", "--resolve-interval-ms=1000"])
        self.assertEqual((a.policy, a.n, a.target, a.resolve_interval_ms), ("every-nth", 3, "unix:/s", 1000))

    def test_defaults_and_env(self) -> None:
        with mock.patch.dict(os.environ, {"ICMPFWD_TARGET": "127.0.0.9:1", "ICMPFWD_TOKEN": "t0k"}):
            a = cli.parser().parse_args(["reply-all"])
        self.assertEqual((a.target, a.token, a.n, a.max_in_flight), ("127.0.0.9:1", "t0k", 2, 0))
        with mock.patch.dict(os.environ, {}, clear=True):
            a = cli.parser().parse_args(["reply-all"])
        self.assertEqual((a.target, a.token, a.delay_ms, a.resolve_interval_ms), ("127.0.0.1:50051", None, 100, 30000))

    def test_usage_errors_are_one_line_and_exit_2(self) -> None:
        for argv, want in [
            (["nope"], "argument policy: invalid choice: 'nope'"),
            (["reply-all", "--bogus"], "unrecognized arguments: --bogus"),
            (["every-nth", "3"], "unrecognized arguments: 3"),
            (["every-nth", "--n", "0"], "argument --n: 0 is below 1"),
            (["reply-all", "--resolve-interval-ms", "999"], "argument --resolve-interval-ms: 999 is below 1000"),
            (["reply-all", "--family", "ipv5"], "argument --family: invalid choice: 'ipv5'"),
            (["reply-all", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        ]:
            err = io.StringIO()
            with redirect_stderr(err):
                self.assertEqual(cli.main(argv), 2, argv)
            lines = err.getvalue().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith(f"icmpfwd-policy-py: {want}"), lines[0])


class LogLineTest(unittest.TestCase):
    def test_json_with_a_level_word_and_the_fields(self) -> None:
        rec = logging.LogRecord("icmpfwd_client", logging.WARNING, __file__, 1, "lost %d", (3,), None)
        rec.created = 1796613255.9261
        rec.target, rec.session, rec.trace_id = "127.0.0.1:1", "s1", None  # type: ignore[attr-defined]
        line = json.loads(logs.JsonFormatter().format(rec))
        self.assertEqual(
            line, {"time": "2026-12-07T03:14:15.926Z", "level": "warn", "msg": "lost 3", "target": "127.0.0.1:1", "session": "s1"}
        )
        self.assertEqual([logs.level_word(n) for n in (10, 20, 30, 40, 50)], ["debug", "info", "warn", "error", "error"])


class DepsTest(unittest.TestCase):
    def test_the_missing_grpc_message_is_one_line_naming_both_remedies(self) -> None:
        msg = deps.MISSING.format(missing="grpc")
        self.assertNotIn("\n", msg)
        self.assertIn("apt-get install python3-grpcio python3-protobuf", msg)
        self.assertIn("pip install grpcio protobuf", msg)


if __name__ == "__main__":
    unittest.main()
