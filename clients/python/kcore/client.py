"""Finding kcore and connecting to it, the way kctl does.

The endpoint is, in order: the ``endpoint`` argument, ``$KCORE_ENDPOINT``, the local
controller socket when it exists (``$KCORE_SOCKET``, by default ``/run/kcore/kcore.sock``),
then ``endpoint`` in ``~/.config/kcore/config.toml`` (``$XDG_CONFIG_HOME/kcore/config.toml``
when that is set). Endpoints are ``unix:///path/to/kcore.sock`` (or a bare absolute path),
``https://host:port`` (mutual TLS) or ``http://host:port`` (plain, for development).

For ``https`` the CA certificate, client certificate and key come from the arguments, else
``$KCORE_CA_CERT``, ``$KCORE_CLIENT_CERT`` and ``$KCORE_CLIENT_KEY``, else ``ca_cert``,
``client_cert`` and ``client_key`` in the config file (relative to the file's directory).

Channels use grpcio's default options. Every call carries the metadata
``kcore-client: kcore-python/VERSION``, so kcore's events say which changes came through
this client. Failed calls raise ``grpc.RpcError`` with kcore's status code and message.
"""

import collections
import os
import pathlib
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional

import grpc

from kcore.v1 import kcore_pb2, kcore_pb2_grpc

__version__ = "0.1.0"

#: The controller's local socket, used when it exists and nothing else was given.
LOCAL_SOCKET = "/run/kcore/kcore.sock"

#: How this client names itself to kcore (metadata ``kcore-client``).
CLIENT_NAME = f"kcore-python/{__version__}"


class KcoreError(Exception):
    """kcore cannot be found, or its endpoint or TLS files are not usable. (A call that kcore
    refuses raises ``grpc.RpcError`` instead.)"""


@dataclass(frozen=True)
class Endpoint:
    """A resolved endpoint."""

    #: The endpoint as given or found (``unix:///run/kcore/kcore.sock``).
    raw: str
    #: ``unix``, ``https`` or ``http``.
    kind: str
    #: The gRPC target: ``unix:/path`` or ``host:port``.
    target: str
    #: Where it came from: ``argument``, ``KCORE_ENDPOINT``, ``local socket`` or the config
    #: file's path.
    source: str
    ca_cert: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None


def default_config_path(env: Mapping[str, str] = os.environ) -> Optional[pathlib.Path]:
    """``$XDG_CONFIG_HOME/kcore/config.toml`` or ``~/.config/kcore/config.toml``."""
    if env.get("XDG_CONFIG_HOME"):
        return pathlib.Path(env["XDG_CONFIG_HOME"]) / "kcore" / "config.toml"
    if env.get("HOME"):
        return pathlib.Path(env["HOME"]) / ".config" / "kcore" / "config.toml"
    return None


def _load_config(path: Optional[pathlib.Path]) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons get tomli (a dependency there)
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError) as e:
        raise KcoreError(f"reading {path}: {e}") from e


def parse_target(raw: str):
    """``(kind, gRPC target)`` of an endpoint string."""
    for prefix in ("unix://", "unix:"):
        if raw.startswith(prefix):
            path = raw[len(prefix):]
            if not path:
                raise KcoreError(
                    f"invalid endpoint {raw!r}: no socket path (use unix:///path/to/kcore.sock)"
                )
            return "unix", f"unix:{path}"
    if raw.startswith("/"):
        return "unix", f"unix:{raw}"
    for scheme in ("https", "http"):
        prefix = f"{scheme}://"
        if raw.startswith(prefix):
            hostport = raw[len(prefix):].rstrip("/")
            if not hostport or hostport.startswith(":") or "/" in hostport:
                raise KcoreError(f"invalid endpoint {raw!r}: expected {scheme}://host:port")
            return scheme, hostport
    raise KcoreError(
        f"unsupported endpoint {raw!r}: use unix:///path/to/kcore.sock or https://host:port"
    )


def resolve(
    endpoint: Optional[str] = None,
    *,
    env: Mapping[str, str] = os.environ,
    local_socket: Optional[str] = None,
    config_path: Optional[pathlib.Path] = None,
) -> Endpoint:
    """Find the endpoint and TLS files as kctl does (see the module's documentation).
    ``env``, ``local_socket`` and ``config_path`` are parameters for tests."""
    get = lambda name: env.get(name) or None  # noqa: E731 - empty counts as unset
    if local_socket is None:
        local_socket = get("KCORE_SOCKET") or LOCAL_SOCKET
    if config_path is None:
        config_path = default_config_path(env)
    config: Optional[dict] = None
    if endpoint:
        raw, source = endpoint, "argument"
    elif get("KCORE_ENDPOINT"):
        raw, source = get("KCORE_ENDPOINT"), "KCORE_ENDPOINT"
    elif os.path.exists(local_socket):
        raw, source = f"unix://{local_socket}", "local socket"
    else:
        config = _load_config(config_path)
        raw = config.get("endpoint")
        if not raw:
            raise KcoreError(
                "no kcore endpoint: pass one, set KCORE_ENDPOINT, or run kcored locally "
                f"({local_socket})"
            )
        source = str(config_path)
    kind, target = parse_target(raw)
    files = {}
    if kind == "https":
        if config is None:
            config = _load_config(config_path)
        base = config_path.parent if config_path else None

        def pick(var, key):
            value = get(var)
            if value:
                return os.path.expanduser(value)
            value = config.get(key)
            if not value:
                return None
            path = pathlib.Path(os.path.expanduser(value))
            if not path.is_absolute() and base is not None:
                path = base / path
            return str(path)

        files = {
            "ca_cert": pick("KCORE_CA_CERT", "ca_cert"),
            "client_cert": pick("KCORE_CLIENT_CERT", "client_cert"),
            "client_key": pick("KCORE_CLIENT_KEY", "client_key"),
        }
    return Endpoint(raw=raw, kind=kind, target=target, source=source, **files)


def _read(what: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise KcoreError(f"reading the {what} {path}: {e}") from e


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _ClientName(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``kcore-client: <name>`` to every call's metadata."""

    def __init__(self, name: str):
        self._pair = ("kcore-client", name)

    def _with_name(self, d):
        metadata = list(d.metadata or []) + [self._pair]
        return _Details(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_name(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_name(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_name(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_name(details), requests)


class Client:
    """A connection to kcore: ``api`` is the ``KcoreServiceStub``, and its RPCs are also
    methods of the client itself (``kc.ListVMs(...)``). Close it, or use it in a ``with``."""

    def __init__(self, channel: grpc.Channel, endpoint: Endpoint):
        self.channel = channel
        self.endpoint = endpoint
        self.api = kcore_pb2_grpc.KcoreServiceStub(channel)

    def __getattr__(self, name: str) -> Callable:
        if name == "api":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.api, name)

    def events(
        self, follow: bool = True, history: int = 0, vm: str = ""
    ) -> Iterator[kcore_pb2.Event]:
        """kcore's events: the last ``history`` ones, then (with ``follow``) each new one as
        it happens. Cancel the iterator (``.cancel()``) or close the client to stop."""
        return self.api.WatchEvents(
            kcore_pb2.WatchEventsRequest(follow=follow, history=history, vm=vm)
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<kcore.Client {self.endpoint.raw}>"


def connect(
    endpoint: Optional[str] = None,
    *,
    ca_cert: Optional[str] = None,
    client_cert: Optional[str] = None,
    client_key: Optional[str] = None,
    options=None,
) -> Client:
    """Connect to kcore. ``endpoint`` and the TLS file paths override what
    :func:`resolve` finds; ``options`` are grpcio channel options (none by default).
    The channel connects lazily: an unreachable kcore shows at the first call."""
    ep = resolve(endpoint)
    if ep.kind == "https":
        ca_cert = ca_cert or ep.ca_cert
        client_cert = client_cert or ep.client_cert
        client_key = client_key or ep.client_key
        if not ca_cert:
            raise KcoreError(
                "an https endpoint needs the cluster CA certificate: set KCORE_CA_CERT or "
                "ca_cert in ~/.config/kcore/config.toml"
            )
        if bool(client_cert) != bool(client_key):
            raise KcoreError(
                "give the client certificate and its key together (KCORE_CLIENT_CERT and "
                "KCORE_CLIENT_KEY)"
            )
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read("CA certificate", ca_cert),
            private_key=_read("client key", client_key) if client_key else None,
            certificate_chain=_read("client certificate", client_cert) if client_cert else None,
        )
        channel = grpc.secure_channel(ep.target, creds, options=options)
        ep = Endpoint(
            raw=ep.raw,
            kind=ep.kind,
            target=ep.target,
            source=ep.source,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
        )
    else:
        channel = grpc.insecure_channel(ep.target, options=options)
    return Client(grpc.intercept_channel(channel, _ClientName(CLIENT_NAME)), ep)
