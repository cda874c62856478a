"""kcore.v1: the modules generated from kcore/v1/kcore.proto when this package is built.

- ``kcore_pb2``: the messages and enums (``ListVMsRequest``, ``VM``, ``VMStatus``, ...);
- ``kcore_pb2_grpc``: ``KcoreServiceStub`` (one method per RPC: ``ListVMs``, ``CreateVM``,
  ``WatchEvents``, ...).

Every message, field and RPC is documented in the proto file.
"""
