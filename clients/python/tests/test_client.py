"""The endpoint resolution, as kctl's: python -m unittest discover -s tests (with the
package installed or built on PYTHONPATH)."""

import os
import pathlib
import socket
import tempfile
import unittest

import kcore
from kcore.client import parse_target, resolve


class Resolution(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.base = pathlib.Path(self.dir.name)
        self.sock = str(self.base / "kcore.sock")
        self.config = self.base / "kcore" / "config.toml"
        self.config.parent.mkdir()

    def tearDown(self):
        self.dir.cleanup()

    def make_socket(self):
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.sock)
        self.addCleanup(s.close)

    def resolve(self, endpoint=None, **env):
        return resolve(endpoint, env=env, local_socket=self.sock, config_path=self.config)

    def test_precedence_argument_env_socket_config(self):
        self.make_socket()
        self.config.write_text('endpoint = "unix:///from/config.sock"\n')
        env = {"KCORE_ENDPOINT": "unix:///from/env.sock"}
        ep = self.resolve("/from/arg.sock", **env)
        self.assertEqual((ep.source, ep.target), ("argument", "unix:/from/arg.sock"))
        ep = self.resolve(**env)
        self.assertEqual((ep.source, ep.target), ("KCORE_ENDPOINT", "unix:/from/env.sock"))
        ep = self.resolve(KCORE_ENDPOINT="")
        self.assertEqual((ep.source, ep.target), ("local socket", f"unix:{self.sock}"))
        os.unlink(self.sock)
        ep = self.resolve()
        self.assertEqual((ep.source, ep.target), (str(self.config), "unix:/from/config.sock"))

    def test_nothing_found_names_the_socket(self):
        with self.assertRaisesRegex(kcore.KcoreError, "no kcore endpoint.*kcore.sock"):
            self.resolve()

    def test_tls_files_from_env_over_config(self):
        self.config.write_text(
            'endpoint = "https://kc.example:7443"\nca_cert = "ca.pem"\n'
            'client_cert = "/etc/kcore/me.pem"\nclient_key = "me.key"\n'
        )
        ep = self.resolve()
        self.assertEqual((ep.kind, ep.target), ("https", "kc.example:7443"))
        self.assertEqual(ep.ca_cert, str(self.config.parent / "ca.pem"))
        self.assertEqual(ep.client_cert, "/etc/kcore/me.pem")
        self.assertEqual(ep.client_key, str(self.config.parent / "me.key"))
        ep = self.resolve(KCORE_ENDPOINT="https://[fd00::1]:7443", KCORE_CLIENT_CERT="/env/c.pem")
        self.assertEqual(ep.target, "[fd00::1]:7443")
        self.assertEqual(ep.client_cert, "/env/c.pem")
        self.assertEqual(ep.ca_cert, str(self.config.parent / "ca.pem"))

    def test_endpoint_forms(self):
        self.assertEqual(parse_target("unix:///run/kcore/kcore.sock"), ("unix", "unix:/run/kcore/kcore.sock"))
        self.assertEqual(parse_target("http://127.0.0.1:50051"), ("http", "127.0.0.1:50051"))
        for bad in ("unix://", "kc.example:7443", "https://", "https://h:1/x"):
            with self.assertRaises(kcore.KcoreError, msg=bad):
                parse_target(bad)

    def test_https_needs_the_ca(self):
        with self.assertRaisesRegex(kcore.KcoreError, "CA certificate"):
            kcore.connect("https://127.0.0.1:1")


if __name__ == "__main__":
    unittest.main()
