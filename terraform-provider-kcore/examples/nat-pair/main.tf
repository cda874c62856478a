# Two VMs on a nat network, each waited for until its guest is ready and has leased an
# address. Uses the test guest `scripts/build-test-guest.sh` builds (quickstart.sh puts a
# copy in /var/lib/kcore/images/demo-guest); see docs/terraform.md for installing the
# provider from a local build.

terraform {
  required_providers {
    kcore = {
      source  = "kcore/kcore"
      version = "0.1.0"
    }
  }
}

# Without endpoint: $KCORE_ENDPOINT, the local socket, then ~/.config/kcore/config.toml,
# as kctl. Over TLS: endpoint = "https://ctl.example.com:9090" with ca_cert, client_cert
# and client_key (files or PEM).
provider "kcore" {}

variable "guest_dir" {
  type    = string
  default = "/var/lib/kcore/images/demo-guest"
}

variable "memory_mb" {
  type    = number
  default = 128
}

resource "kcore_network" "lan" {
  name   = "tf-lan"
  mode   = "nat"
  subnet = "10.77.0.0/24"
}

resource "kcore_vm" "web" {
  for_each = toset(["web-1", "web-2"])

  name      = each.key
  vcpu      = 1
  memory_mb = var.memory_mb # a change is an in-place update: stop, update, start
  kernel    = "${var.guest_dir}/vmlinuz"
  initrd    = "${var.guest_dir}/initrd.img"
  # The test guest leases an address on eth0 and prints KCORE-DHCP-BOUND when it has one.
  cmdline       = "console=ttyS0 quiet kcore.echo=off kcore.dhcp=eth0"
  ready_pattern = "KCORE-DHCP-BOUND"

  nic {
    network = kcore_network.lan.name
  }

  wait_for {
    ready   = true
    ipv4    = true
    timeout = "5m"
  }
}

resource "kcore_volume" "scratch" {
  name    = "tf-scratch"
  size_gb = 1
}

data "kcore_nodes" "all" {}

output "addresses" {
  value = { for name, vm in kcore_vm.web : name => vm.ipv4 }
}

output "nodes" {
  value = [for n in data.kcore_nodes.all.nodes : "${n.name} ${n.state} ${n.allocation.vcpu}/${n.cpus} vCPUs"]
}
