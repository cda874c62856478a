# A kcore controller at 10.0.0.1 (docs/nixos.md): nodes dial 10.0.0.1:9090, so the address
# is in its certificate. Its CA, to copy to the nodes, is /var/lib/kcore-controller/pki/ca.crt.
{
  services.kcore-controller = {
    enable = true;
    tlsSans = [
      "10.0.0.1"
      "ctl.example.com"
    ];
    openFirewall = true;
  };
}
