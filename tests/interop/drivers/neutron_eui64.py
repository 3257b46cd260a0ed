"""The address Neutron's IPAM gives a port on an automatic-address (SLAAC or
DHCPv6-stateless) subnet: ``neutron.ipam.requests.AutomaticAddressRequest``.

Payload: ``{"ports": [[prefix, mac], ...]}``; answer: the addresses, in that order."""


def main(payload):
    from neutron.ipam.requests import AutomaticAddressRequest

    return [str(AutomaticAddressRequest(prefix=prefix, mac=mac).address)
            for prefix, mac in payload["ports"]]
