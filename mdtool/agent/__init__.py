"""The metadata agent: (network, client address) -> instance, then a signed request to Nova."""
