"""A Python client for kcore's gRPC API, ``kcore.v1.KcoreService``.

::

    import kcore
    from kcore.v1 import kcore_pb2 as pb

    with kcore.connect() as kc:  # found like kctl finds kcore
        for vm in kc.ListVMs(pb.ListVMsRequest()).vms:
            print(vm.name, pb.VMStatus.Name(vm.status))

``kcore.v1.kcore_pb2`` (messages) and ``kcore.v1.kcore_pb2_grpc`` (the stub) are generated
from kcore's proto files when the package is built; :mod:`kcore.client` is the hand-written
part: finding the endpoint (argument, ``KCORE_*`` environment, local socket, config file)
and connecting (unix socket, or mutual TLS).
"""

from kcore.client import (
    CLIENT_NAME,
    LOCAL_SOCKET,
    Client,
    Endpoint,
    KcoreError,
    __version__,
    connect,
    resolve,
)

__all__ = [
    "CLIENT_NAME",
    "LOCAL_SOCKET",
    "Client",
    "Endpoint",
    "KcoreError",
    "__version__",
    "connect",
    "resolve",
]
