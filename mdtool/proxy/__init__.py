"""The metadata proxy: 169.254.169.254:80 inside each DHCP namespace -> the agent's Unix socket."""
