"""The generated Python client (clients/python, built and on PYTHONPATH) against a real
kcored, for tests/tests/python_client.rs. kcore.connect() finds kcore from the environment
the test sets (KCORE_SOCKET, or KCORE_ENDPOINT and the KCORE_* TLS files).

  life NAME KERNEL INITRD   list; follow events; create NAME; get; delete; the events seen
  list                      ListVMs, or the refusal's code and details
Prints JSON.
"""

import json
import sys
import threading

import grpc

import kcore
from kcore.v1 import kcore_pb2 as pb


def life(kc, name, kernel, initrd):
    out = {"endpoint": kc.endpoint.raw, "source": kc.endpoint.source}
    out["before"] = [vm.name for vm in kc.ListVMs(pb.ListVMsRequest(), timeout=30).vms]

    # Follow the events live (no history): everything from here on, in a thread.
    events = kc.events(follow=True, history=0)
    seen = []
    done = threading.Event()

    def follow():
        try:
            for ev in events:
                seen.append(
                    {"kind": ev.kind, "vm": ev.vm_name, "message": ev.message,
                     "status": pb.VMStatus.Name(ev.status)}
                )
                if ev.kind == "vm.deleted" and ev.vm_name == name:
                    break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                seen.append({"error": f"{e.code().name}: {e.details()}"})
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    # The stream is open once the server answers its headers; a ListVMs after that is
    # ordered after the subscription on the server's side (same connection, in order).
    events.initial_metadata()

    spec = pb.VMSpec(
        vcpu=1,
        memory_mb=128,
        kernel=kernel,
        initrd=initrd,
        cmdline="console=ttyS0 quiet panic=-1",
        ready_pattern="KCORE-GUEST-READY",
    )
    vm = kc.CreateVM(pb.CreateVMRequest(name=name, spec=spec), timeout=120)
    out["created"] = {"name": vm.name, "status": pb.VMStatus.Name(vm.status), "node": vm.node}
    got = kc.GetVM(pb.GetVMRequest(name=name), timeout=30)
    out["got"] = {"id": got.id, "status": pb.VMStatus.Name(got.status), "vcpu": got.vcpu,
                  "memory_mb": got.memory_mb, "same_id": got.id == vm.id}
    try:
        kc.GetVM(pb.GetVMRequest(name="no-such-vm"), timeout=30)
        out["missing"] = "found?"
    except grpc.RpcError as e:
        out["missing"] = {"code": e.code().name, "details": e.details()}
    kc.DeleteVM(pb.DeleteVMRequest(name=name, force=True), timeout=120)
    out["after"] = [vm.name for vm in kc.ListVMs(pb.ListVMsRequest(), timeout=30).vms]
    done.wait(60)
    events.cancel()
    out["events"] = seen
    return out


def list_vms(kc):
    try:
        return {"vms": [vm.name for vm in kc.ListVMs(pb.ListVMsRequest(), timeout=30).vms]}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


if __name__ == "__main__":
    with kcore.connect() as kc:
        if sys.argv[1] == "life":
            result = life(kc, *sys.argv[2:5])
        elif sys.argv[1] == "list":
            result = list_vms(kc)
        else:
            sys.exit(f"unknown command {sys.argv[1]}")
    result["grpcio"] = grpc.__version__
    result["kcore"] = kcore.__version__
    print(json.dumps(result))
