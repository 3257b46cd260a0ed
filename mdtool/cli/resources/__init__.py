"""Resource commands shaped like the OpenStack client: net-, subnet-, port-, instance-."""

from mdtool.cli.resources import instance, network, port, subnet

COMMANDS = network.COMMANDS + subnet.COMMANDS + port.COMMANDS + instance.COMMANDS
