"""Queries and changes of the registry, the one place their SQL is written (plain SQL with
``?`` placeholders, run by :mod:`mdtool.registry.db` on SQLite or PostgreSQL). Returns
detached views from ``mdtool.model``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from mdtool import model
from mdtool.errors import BadInput, Conflict, NotFound, OperationFailed
from mdtool.registry import db
from mdtool.registry.db import Connection, Engine
from mdtool.registry import ipv6_modes
from mdtool.registry import validate as v

USER_DATA_MAX = 64 * 1024
VENDOR_DATA_MAX = 64 * 1024

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
Row = Any  # a row of a table: a named tuple of its columns (mdtool.registry.db)


def _marks(values: list) -> str:
    """``?, ?, …``: one placeholder per value of an IN list."""
    return ", ".join("?" * len(values))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Registry:
    def __init__(self, url: str, engine: Engine | None = None):
        self.url = url
        self.engine = engine or db.make_engine(url)
        self._notify = db.is_postgresql(self.engine)
        db.upgrade(self.engine)
        db.secure_sqlite_file(self.engine)

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except self.engine.errors[0] as e:
            raise OperationFailed(f"registry read failed: {db._short(e)}") from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One serialised write transaction: the revision bump takes the write lock first.

        SQLite writers start with BEGIN IMMEDIATE and wait up to the busy timeout for the
        lock; PostgreSQL writers queue on the registry_state row lock. Either way a
        concurrent writer waits its turn instead of failing. Under PostgreSQL's READ
        COMMITTED every later statement of the transaction sees what the previous lock
        holder committed, so IP allocation needs no other lock and never hits a
        serialization failure. On PostgreSQL the transaction also sends
        ``NOTIFY mdtool_registry, '<revision>'``, delivered to listeners at COMMIT only
        (never for a rolled-back change): see :mod:`mdtool.registry.notify`.
        """
        operational, integrity = self.engine.errors
        try:
            with self.engine.begin(write=True) as conn:
                revision = conn.execute(
                    "UPDATE registry_state SET revision = revision + 1 WHERE id = 1 "
                    "RETURNING revision").scalar_one()
                if self._notify:
                    from mdtool.registry import notify
                    conn.execute("SELECT pg_notify(?, ?)", (notify.CHANNEL, str(revision)))
                yield conn
        except operational as e:
            raise OperationFailed(f"registry write failed: {db._short(e)}") from None
        except integrity as e:
            raise Conflict(f"conflicting change: {db._short(e)}") from None

    def revision(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT revision FROM registry_state").scalar_one()

    def changes(self):
        """A feed that wakes its reader when the registry may have changed.

        PostgreSQL: LISTEN on a dedicated connection (changes made on any node arrive
        within milliseconds), with a slow revision poll as a fallback. SQLite: a fast
        poll of the database files' stat, a revision query when they moved and every
        0.75 s whatever they say. Readers loop: compare ``revision()``, then
        ``await feed.wait(feed.interval, stop)``.
        """
        from mdtool.registry import notify  # asyncio: only for the daemons that follow
        if self._notify:
            return notify.PgListenFeed(self.engine)
        engine = self.engine
        files = ((engine.database, engine.database + "-wal")
                 if engine.dialect == "sqlite" and not engine.memory else ())
        return notify.PollFeed(files=files)

    def wait_for_change(self, timeout: float) -> bool:
        """Blocking: True when a change notification arrived within ``timeout`` seconds.

        Without notifications (SQLite) it answers True once the database files moved, or
        after ``notify.FULL_CHECK_TICKS`` timeouts at most: check ``revision()``.
        """
        feed = self.__dict__.get("_blocking_feed")
        if feed is None:
            feed = self.__dict__["_blocking_feed"] = self.changes()
        return feed.wait_blocking(timeout)

    # -- lookup by name or id -----------------------------------------------------------

    def _resolve(self, conn: Connection, table: str, ref: str, kind: str) -> Row:
        if not ref:
            raise BadInput(f"empty {kind} name or id")
        row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (ref,)).first()
        if row is not None:
            return row
        rows = conn.execute(f"SELECT * FROM {table} WHERE name = ?", (ref,)).all()
        if not rows and 4 <= len(ref) <= 36:  # a prefix of a UUID
            prefix = ref.replace("/", "//").replace("%", "/%").replace("_", "/_")
            rows = conn.execute(f"SELECT * FROM {table} WHERE id LIKE ? ESCAPE '/'",
                                (prefix + "%",)).all()
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise NotFound(f"no {kind} named or with id {ref!r} (see: mdtool {kind}-list)")
        raise Conflict(f"{len(rows)} {kind}s match {ref!r}: use the id (see: mdtool {kind}-list)")

    # -- views --------------------------------------------------------------------------

    @staticmethod
    def _subnet_view(r: Row) -> model.Subnet:
        return model.Subnet(
            id=r.id, name=r.name, network_id=r.network_id, cidr=r.cidr, ip_version=r.ip_version,
            gateway_ip=r.gateway_ip, enable_dhcp=bool(r.enable_dhcp),
            allocation_pools=[model.AllocationPool(p["start"], p["end"]) for p in r.allocation_pools],
            dns_nameservers=list(r.dns_nameservers),
            host_routes=[model.HostRoute(h["destination"], h["nexthop"]) for h in r.host_routes],
            project_id=r.project_id, ipv6_address_mode=r.ipv6_address_mode,
            ipv6_ra_mode=r.ipv6_ra_mode)

    @staticmethod
    def _instance_view(r: Row) -> model.Instance:
        return model.Instance(
            id=r.id, name=r.name, hostname=r.hostname, project_id=r.project_id,
            key_name=r.key_name, public_keys=dict(r.public_keys), meta=dict(r.meta),
            user_data=r.user_data, vendor_data=r.vendor_data,
            availability_zone=r.availability_zone, launch_index=r.launch_index,
            created_at=r.created_at, password=r.password, flavor=r.flavor)

    def _ports(self, conn: Connection, where: str = "", params: tuple = ()) -> list[model.Port]:
        """The ports ``WHERE where`` (all without), with their fixed IPs."""
        rows = conn.execute(f"SELECT * FROM ports {'WHERE ' + where if where else ''} "
                            "ORDER BY network_id, name, id", params).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        allocs: dict[str, list[model.FixedIP]] = {}
        if len(ids) < 500:
            aq = conn.execute(f"SELECT * FROM ip_allocations WHERE port_id IN ({_marks(ids)}) "
                              'ORDER BY "position"', ids)
        else:
            aq = conn.execute('SELECT * FROM ip_allocations ORDER BY "position"')
        for a in aq:
            allocs.setdefault(a.port_id, []).append(model.FixedIP(a.subnet_id, a.ip_address))
        return [model.Port(id=r.id, name=r.name, network_id=r.network_id, mac_address=r.mac_address,
                           fixed_ips=allocs.get(r.id, []), device_id=r.device_id,
                           device_owner=r.device_owner, project_id=r.project_id, host=r.host,
                           port_security_enabled=bool(r.port_security_enabled))
                for r in rows]

    def _network_view(self, conn: Connection, r: Row, with_ports: bool,
                      hosts: list[str] | None = None) -> model.Network:
        subs = conn.execute("SELECT * FROM subnets WHERE network_id = ? "
                            "ORDER BY ip_version, cidr", (r.id,)).all()
        net = model.Network(id=r.id, name=r.name, bridge=r.bridge, mtu=r.mtu, project_id=r.project_id,
                            subnets=[self._subnet_view(s) for s in subs],
                            hosts=hosts if hosts is not None else self._hosts(conn, r.id).get(r.id, []))
        if with_ports:
            net.ports = self._ports(conn, "network_id = ?", (r.id,))
        return net

    @staticmethod
    def _hosts(conn: Connection, network_id: str | None = None) -> dict[str, list[str]]:
        """network id -> the hosts serving it, sorted."""
        if network_id is None:
            rows = conn.execute("SELECT * FROM network_hosts ORDER BY network_id, host")
        else:
            rows = conn.execute("SELECT * FROM network_hosts WHERE network_id = ? "
                                "ORDER BY network_id, host", (network_id,))
        out: dict[str, list[str]] = {}
        for h in rows:
            out.setdefault(h.network_id, []).append(h.host)
        return out

    # -- which nodes serve a network -------------------------------------------------------

    def serve_network(self, network: str, host: str) -> bool:
        """Record that ``host`` serves the network; False when it already did (no write,
        so the revision does not move)."""
        with self._read() as conn:
            nid = self._resolve(conn, "networks", network, "net").id
            if host in self._hosts(conn, nid).get(nid, []):
                return False
        with self._write() as conn:
            nid = self._resolve(conn, "networks", network, "net").id
            if host in self._hosts(conn, nid).get(nid, []):
                return False
            conn.insert("network_hosts", {"network_id": nid, "host": host, "created_at": _now()})
        return True

    def unserve_network(self, network: str, host: str) -> bool:
        """``host`` no longer serves the network; False when it did not."""
        with self._read() as conn:
            nid = self._resolve(conn, "networks", network, "net").id
            if host not in self._hosts(conn, nid).get(nid, []):
                return False
        with self._write() as conn:
            res = conn.execute("DELETE FROM network_hosts WHERE network_id = ? AND host = ?",
                               (nid, host))
            return res.rowcount > 0

    def served_networks(self, host: str) -> list[str]:
        """Ids of the networks ``host`` serves."""
        with self._read() as conn:
            return conn.execute("SELECT network_id FROM network_hosts WHERE host = ? "
                                "ORDER BY network_id", (host,)).scalars()

    # -- networks -----------------------------------------------------------------------

    def create_network(self, name: str, bridge: str | None = None, mtu: int = 1500,
                       project_id: str = "admin") -> model.Network:
        v.name(name, "network name")
        v.mtu(mtu)
        v.project_id(project_id)
        nid = str(uuid.uuid4())
        bridge = bridge or f"brq{nid[:11]}"
        if len(bridge) > 15 or not all(c.isalnum() or c in "-_." for c in bridge):
            raise BadInput(f"invalid bridge name {bridge!r}: at most 15 letters, digits, - _ .")
        with self._write() as conn:
            conn.insert("networks", dict(id=nid, name=name, bridge=bridge, mtu=mtu,
                                                    project_id=project_id, created_at=_now()))
        return self.get_network(nid)

    def list_networks(self) -> list[model.Network]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM networks ORDER BY name, id").all()
            hosts = self._hosts(conn)
            return [self._network_view(conn, r, with_ports=False, hosts=hosts.get(r.id, []))
                    for r in rows]

    def networks_with_ports(self) -> tuple[int, list[model.Network]]:
        """(revision, every network with its subnets and ports), in one read transaction of
        four queries: what ``get_network`` returns for each, for callers that visit many."""
        with self._read() as conn:
            revision = conn.execute("SELECT revision FROM registry_state").scalar_one()
            rows = conn.execute("SELECT * FROM networks ORDER BY name, id").all()
            subs: dict[str, list[model.Subnet]] = {}
            for s in conn.execute("SELECT * FROM subnets ORDER BY network_id, ip_version, cidr"):
                subs.setdefault(s.network_id, []).append(self._subnet_view(s))
            ports: dict[str, list[model.Port]] = {}
            for p in self._ports(conn):
                ports.setdefault(p.network_id, []).append(p)
            hosts = self._hosts(conn)
        return revision, [model.Network(id=r.id, name=r.name, bridge=r.bridge, mtu=r.mtu,
                                        project_id=r.project_id, subnets=subs.get(r.id, []),
                                        ports=ports.get(r.id, []), hosts=hosts.get(r.id, []))
                          for r in rows]

    def get_network(self, ref: str) -> model.Network:
        with self._read() as conn:
            return self._network_view(conn, self._resolve(conn, "networks", ref, "net"), with_ports=True)

    def update_network(self, ref: str, name: str | None = None, mtu: int | None = None) -> model.Network:
        values = {}
        if name is not None:
            values["name"] = v.name(name, "network name")
        if mtu is not None:
            values["mtu"] = v.mtu(mtu)
        with self._write() as conn:
            r = self._resolve(conn, "networks", ref, "net")
            if values:
                conn.update("networks", values, "id = ?", (r.id,))
        return self.get_network(r.id)

    def delete_network(self, ref: str) -> model.Network:
        with self._write() as conn:
            r = self._resolve(conn, "networks", ref, "net")
            ports = conn.execute("SELECT id, device_owner, host FROM ports WHERE network_id = ?",
                                 (r.id,)).all()
            hosts = sorted({p.host for p in ports if p.device_owner == model.DHCP_OWNER})
            if hosts:
                raise Conflict(f"network {r.name} ({r.id}) is still served by host(s) "
                               f"{', '.join(hosts)}: mdtool disable-isolated-metadata {ref} "
                               "(on each of them), then net-delete again")
            if ports:
                ids = " ".join(p.id for p in ports[:5]) + (" …" if len(ports) > 5 else "")
                raise Conflict(f"network {r.name} ({r.id}) still has {len(ports)} port(s): "
                               f"mdtool port-delete {ids}")
            net = self._network_view(conn, r, with_ports=False)
            conn.execute("DELETE FROM network_hosts WHERE network_id = ?", (r.id,))
            conn.execute("DELETE FROM subnets WHERE network_id = ?", (r.id,))
            conn.execute("DELETE FROM networks WHERE id = ?", (r.id,))
        return net

    # -- subnets ------------------------------------------------------------------------

    def create_subnet(self, network: str, cidr: str, *, name: str = "", gateway: str | None = None,
                      no_gateway: bool = False, pools: Iterable[tuple[str, str]] = (),
                      dns_nameservers: Iterable[str] = (), host_routes: Iterable[tuple[str, str]] = (),
                      enable_dhcp: bool = True, ip_version: int | None = None,
                      project_id: str | None = None, ipv6_address_mode: str | None = None,
                      ipv6_ra_mode: str | None = None) -> model.Subnet:
        if name:
            v.name(name, "subnet name")
        net = v.subnet_cidr(cidr)
        if ip_version is not None and ip_version != net.version:
            raise BadInput(f"--ip-version {ip_version} does not match {cidr} (IPv{net.version})")
        ipv6_modes.check(net, ipv6_address_mode, ipv6_ra_mode, enable_dhcp)
        if net.num_addresses < 4 and net.version == 4:
            raise BadInput(f"subnet {cidr} is too small: at least a /30 is needed")
        if gateway is not None and no_gateway:
            raise BadInput("--gateway and --no-gateway exclude each other")
        first, last = self._host_range(net)
        if no_gateway:
            gw = None
        elif gateway is not None:
            gw = v.ip(gateway, "gateway IP")
            self._check_in_subnet(gw, net, "gateway")
        else:
            gw = first
        pool_list = [(v.ip(s, "pool start"), v.ip(e, "pool end")) for s, e in pools]
        for s, e in pool_list:
            for a in (s, e):
                self._check_in_subnet(a, net, "allocation pool address")
            if int(s) > int(e):
                raise BadInput(f"allocation pool {s}-{e}: start is after end")
        for i, (s1, e1) in enumerate(pool_list):
            for s2, e2 in pool_list[i + 1:]:
                if int(s1) <= int(e2) and int(s2) <= int(e1):
                    raise BadInput(f"allocation pools {s1}-{e1} and {s2}-{e2} overlap")
        if pool_list:
            if gw is not None and any(int(s) <= int(gw) <= int(e) for s, e in pool_list):
                raise BadInput(f"gateway {gw} is inside an allocation pool: pick another gateway or pool")
        else:
            pool_list = self._default_pools(first, last, gw)
            if not pool_list:
                raise BadInput(f"subnet {cidr} has no address left for an allocation pool")
        dns = []
        for d in dns_nameservers:
            a = v.ip(d, "DNS nameserver")
            dns.append(str(a))
        if len(set(dns)) != len(dns):
            raise BadInput("a DNS nameserver is given twice")
        routes = self._host_routes(host_routes, net.version)
        sid = str(uuid.uuid4())
        with self._write() as conn:
            nrow = self._resolve(conn, "networks", network, "net")
            for s in conn.execute("SELECT * FROM subnets WHERE network_id = ?", (nrow.id,)):
                other = ipaddress.ip_network(s.cidr)
                if other.version == net.version and other.overlaps(net):
                    raise Conflict(f"{net} overlaps subnet {s.name or s.id} ({s.cidr}) on network {nrow.name}")
            conn.insert("subnets", dict(
                id=sid, network_id=nrow.id, name=name, cidr=str(net), ip_version=net.version,
                gateway_ip=str(gw) if gw is not None else None, enable_dhcp=enable_dhcp,
                allocation_pools=[{"start": str(s), "end": str(e)} for s, e in pool_list],
                dns_nameservers=dns, host_routes=routes,
                project_id=project_id or nrow.project_id,
                ipv6_address_mode=ipv6_address_mode, ipv6_ra_mode=ipv6_ra_mode))
            if ipv6_modes.is_auto_address(ipv6_address_mode, ipv6_ra_mode):
                self._add_auto_addresses(conn, nrow.id, sid, str(net))
        return self.get_subnet(sid)

    @staticmethod
    def _add_auto_addresses(conn: Connection, network_id: str, subnet_id: str, cidr: str) -> None:
        """A new automatic-address subnet gives every port of its network the EUI-64
        address of its MAC there (as Neutron does on subnet create)."""
        last = dict(conn.execute('SELECT port_id, max("position") FROM ip_allocations '
                                 "WHERE network_id = ? GROUP BY port_id", (network_id,)).all())
        for port_id, mac in conn.execute("SELECT id, mac_address FROM ports WHERE network_id = ?",
                                         (network_id,)).all():
            conn.insert("ip_allocations", dict(
                port_id=port_id, subnet_id=subnet_id, network_id=network_id,
                ip_address=str(ipv6_modes.eui64_address(cidr, mac)),
                position=last.get(port_id, -1) + 1))

    @staticmethod
    def _host_routes(specs: Iterable[tuple[str, str]], version: int) -> list[dict[str, str]]:
        routes = []
        for dest, hop in specs:
            dnet, nh = v.cidr(dest), v.ip(hop, "host route nexthop")
            if dnet.version != version or nh.version != version:
                raise BadInput(f"host route {dest} via {hop} is not IPv{version}")
            routes.append({"destination": str(dnet), "nexthop": str(nh)})
        return routes

    @staticmethod
    def _host_range(net: Net) -> tuple[Addr, Addr]:
        if net.version == 4:
            if net.prefixlen >= 31:
                return net.network_address, net.broadcast_address
            return net.network_address + 1, net.broadcast_address - 1
        # IPv6: the subnet-router anycast (::0) is not handed out; the last address is usable.
        return net.network_address + 1, net.broadcast_address

    @staticmethod
    def _default_pools(first: Addr, last: Addr, gw: Addr | None) -> list[tuple[Addr, Addr]]:
        if gw is None or not int(first) <= int(gw) <= int(last):
            return [(first, last)]
        pools = []
        if int(gw) > int(first):
            pools.append((first, gw - 1))
        if int(gw) < int(last):
            pools.append((gw + 1, last))
        return pools

    @staticmethod
    def _check_in_subnet(a: Addr, net: Net, what: str) -> None:
        if a.version != net.version or a not in net:
            raise BadInput(f"{what} {a} is outside {net}")
        if net.version == 4 and net.prefixlen < 31 and a in (net.network_address, net.broadcast_address):
            kind = "network" if a == net.network_address else "broadcast"
            raise BadInput(f"{what} {a} is the {kind} address of {net}")
        if net.version == 6 and a == net.network_address:
            raise BadInput(f"{what} {a} is the subnet-router anycast address of {net}")

    def list_subnets(self, network: str | None = None) -> list[model.Subnet]:
        with self._read() as conn:
            if network:
                rows = conn.execute("SELECT * FROM subnets WHERE network_id = ? "
                                    "ORDER BY network_id, cidr",
                                    (self._resolve(conn, "networks", network, "net").id,))
            else:
                rows = conn.execute("SELECT * FROM subnets ORDER BY network_id, cidr")
            return [self._subnet_view(r) for r in rows]

    def get_subnet(self, ref: str) -> model.Subnet:
        with self._read() as conn:
            return self._subnet_view(self._resolve(conn, "subnets", ref, "subnet"))

    def update_subnet(self, ref: str, *, name: str | None = None,
                      dns_nameservers: list[str] | None = None,
                      host_routes: list[tuple[str, str]] | None = None,
                      enable_dhcp: bool | None = None) -> model.Subnet:
        values: dict = {}
        if name is not None:
            values["name"] = v.name(name, "subnet name") if name else ""
        if dns_nameservers is not None:
            values["dns_nameservers"] = [str(v.ip(d, "DNS nameserver")) for d in dns_nameservers]
        if enable_dhcp is not None:
            values["enable_dhcp"] = enable_dhcp
        with self._write() as conn:
            r = self._resolve(conn, "subnets", ref, "subnet")
            if enable_dhcp is not None:
                ipv6_modes.check_dhcp_change(self._subnet_view(r), enable_dhcp)
            if host_routes is not None:
                values["host_routes"] = self._host_routes(host_routes, r.ip_version)
            if values:
                conn.update("subnets", values, "id = ?", (r.id,))
        return self.get_subnet(r.id)

    def delete_subnet(self, ref: str) -> model.Subnet:
        with self._write() as conn:
            r = self._resolve(conn, "subnets", ref, "subnet")
            n = conn.execute("SELECT count(*) FROM ip_allocations WHERE subnet_id = ?",
                             (r.id,)).scalar_one()
            if n:
                raise Conflict(f"subnet {r.name or r.id} still has {n} address(es) allocated: "
                               "delete those ports first")
            conn.execute("DELETE FROM subnets WHERE id = ?", (r.id,))
            return self._subnet_view(r)

    # -- ports --------------------------------------------------------------------------

    def create_port(self, network: str, *, name: str = "", mac_address: str | None = None,
                    fixed_ips: Iterable[dict[str, str]] | None = None, device_id: str | None = None,
                    device_owner: str | None = None, project_id: str | None = None,
                    host: str = "", port_security_enabled: bool = True) -> model.Port:
        if name:
            v.name(name, "port name")
        mac = v.mac(mac_address) if mac_address else None
        if project_id:
            v.project_id(project_id)
        pid = str(uuid.uuid4())
        with self._write() as conn:
            nrow = self._resolve(conn, "networks", network, "net")
            inst = self._resolve(conn, "instances", device_id, "instance") if device_id else None
            owner = device_owner if device_owner is not None else ("compute:nova" if inst else "")
            project = project_id or (inst.project_id if inst else nrow.project_id)
            if mac is None:
                mac = self._free_mac(conn, nrow.id)
            elif conn.execute("SELECT id FROM ports WHERE network_id = ? AND mac_address = ?",
                              (nrow.id, mac)).first():
                raise Conflict(f"MAC address {mac} is already used on network {nrow.name}")
            conn.insert("ports", dict(
                id=pid, network_id=nrow.id, name=name, mac_address=mac,
                device_id=inst.id if inst else "", device_owner=owner, project_id=project, host=host,
                port_security_enabled=bool(port_security_enabled)))
            self._allocate(conn, nrow, pid, fixed_ips)
        return self.get_port(pid)

    def _free_mac(self, conn: Connection, network_id: str) -> str:
        used = set(conn.execute("SELECT mac_address FROM ports WHERE network_id = ?",
                                (network_id,)).scalars())
        for _ in range(1000):
            mac = "fa:16:3e:%02x:%02x:%02x" % tuple(os.urandom(3))
            if mac not in used:
                return mac
        raise OperationFailed(f"no free MAC address left on network {network_id}")

    def _allocate(self, conn: Connection, nrow: Row, port_id: str,
                  fixed_ips: Iterable[dict[str, str]] | None, start_pos: int = 0) -> None:
        subnets = conn.execute("SELECT * FROM subnets WHERE network_id = ? "
                               "ORDER BY ip_version, cidr", (nrow.id,)).all()
        wanted: list[tuple[Row, Addr | None]] = []
        auto = [s for s in subnets if ipv6_modes.is_auto_address(s.ipv6_address_mode, s.ipv6_ra_mode)]
        auto_ids = {s.id for s in auto}
        if fixed_ips is None:
            # Neutron's default: one address from an IPv4 subnet and one from a DHCPv6 (or
            # static) IPv6 subnet; the automatic-address subnets come below.
            v4 = [s for s in subnets if s.ip_version == 4]
            v6 = [s for s in subnets if s.ip_version == 6 and s.id not in auto_ids]
            wanted = [(s, None) for s in v4[:1] + v6[:1]]
        else:
            for spec in fixed_ips:
                sub = None
                if spec.get("subnet"):
                    sub = self._resolve(conn, "subnets", spec["subnet"], "subnet")
                    if sub.network_id != nrow.id:
                        raise Conflict(f"subnet {spec['subnet']} is not on network {nrow.name}")
                addr = v.fixed_ip(spec["ip_address"]) if spec.get("ip_address") else None
                if sub is None:
                    if addr is None:
                        raise BadInput("--fixed-ip needs subnet=… or ip_address=…")
                    matches = [s for s in subnets if addr in ipaddress.ip_network(s.cidr)]
                    if not matches:
                        raise BadInput(f"IP address {addr} is in no subnet of network {nrow.name}")
                    sub = matches[0]
                if addr is not None and sub.id in auto_ids:
                    raise BadInput(f"IPv6 address {addr} cannot be given to a port on subnet "
                                   f"{sub.name or sub.id}: it uses automatic addresses "
                                   f"({sub.ipv6_address_mode or sub.ipv6_ra_mode}, EUI-64 of "
                                   "the MAC); name the subnet only")
                wanted.append((sub, addr))
        # Every automatic-address subnet gives the port its EUI-64 address (as Neutron).
        have = set(conn.execute("SELECT subnet_id FROM ip_allocations WHERE port_id = ?",
                                (port_id,)).scalars())
        have |= {s.id for s, _ in wanted}
        wanted += [(s, None) for s in auto if s.id not in have]
        mac = conn.execute("SELECT mac_address FROM ports WHERE id = ?", (port_id,)).scalar_one()
        used_now: set[str] = set()
        for pos, (sub, addr) in enumerate(wanted):
            net = ipaddress.ip_network(sub.cidr)
            used = set(conn.execute("SELECT ip_address FROM ip_allocations WHERE subnet_id = ?",
                                    (sub.id,)).scalars()) | used_now
            if addr is not None:
                self._check_in_subnet(addr, net, "fixed IP")
                if str(addr) in used:
                    raise Conflict(f"IP address {addr} is already in use on network {nrow.name}")
                if sub.gateway_ip and str(addr) == sub.gateway_ip:
                    raise Conflict(f"IP address {addr} is the gateway of subnet {sub.name or sub.id}")
            elif sub.id in auto_ids:
                addr = ipv6_modes.eui64_address(sub.cidr, mac)
                if str(addr) in used:
                    raise Conflict(f"IP address {addr} (EUI-64 of {mac}) is already in use on "
                                   f"network {nrow.name}")
            else:
                addr = self._next_free(sub, used)
            used_now.add(str(addr))
            conn.insert("ip_allocations", dict(
                port_id=port_id, subnet_id=sub.id, network_id=nrow.id, ip_address=str(addr), position=start_pos + pos))

    @staticmethod
    def _next_free(sub: Row, used: set[str]) -> Addr:
        used_ints = {int(ipaddress.ip_address(u)) for u in used}
        for p in sub.allocation_pools:
            start, end = int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"]))
            i = start
            while i <= end:
                if i not in used_ints:
                    return ipaddress.ip_address(i)
                i += 1
        raise Conflict(f"no free IP address left in the pools of subnet {sub.name or sub.id} ({sub.cidr})")

    def list_ports(self, network: str | None = None, device_id: str | None = None) -> list[model.Port]:
        with self._read() as conn:
            where, params = [], []
            if network:
                where.append("network_id = ?")
                params.append(self._resolve(conn, "networks", network, "net").id)
            if device_id:
                where.append("device_id = ?")
                params.append(device_id)
            return self._ports(conn, " AND ".join(where), tuple(params))

    def get_port(self, ref: str) -> model.Port:
        with self._read() as conn:
            r = self._resolve(conn, "ports", ref, "port")
            return self._ports(conn, "id = ?", (r.id,))[0]

    def update_port(self, ref: str, *, name: str | None = None, device_id: str | None = None,
                    fixed_ips: list[dict[str, str]] | None = None,
                    mac_address: str | None = None,
                    port_security_enabled: bool | None = None) -> model.Port:
        with self._write() as conn:
            r = self._resolve(conn, "ports", ref, "port")
            values: dict = {}
            if name is not None:
                values["name"] = v.name(name, "port name") if name else ""
            if device_id is not None:
                if device_id == "":
                    values.update(device_id="", device_owner="" if r.device_owner == "compute:nova"
                                  else r.device_owner)
                else:
                    inst = self._resolve(conn, "instances", device_id, "instance")
                    values.update(device_id=inst.id, project_id=inst.project_id,
                                  device_owner=r.device_owner or "compute:nova")
            if mac_address is not None:
                mac = v.mac(mac_address)
                if conn.execute("SELECT id FROM ports WHERE network_id = ? AND mac_address = ? "
                                "AND id != ?", (r.network_id, mac, r.id)).first():
                    raise Conflict(f"MAC address {mac} is already used on this network")
                values["mac_address"] = mac
            if port_security_enabled is not None:
                values["port_security_enabled"] = bool(port_security_enabled)
            if values:
                conn.update("ports", values, "id = ?", (r.id,))
            if fixed_ips is not None:
                conn.execute("DELETE FROM ip_allocations WHERE port_id = ?", (r.id,))
                nrow = conn.execute("SELECT * FROM networks WHERE id = ?", (r.network_id,)).one()
                self._allocate(conn, nrow, r.id, fixed_ips)
        return self.get_port(r.id)

    def delete_port(self, ref: str) -> model.Port:
        with self._write() as conn:
            r = self._resolve(conn, "ports", ref, "port")
            port = self._ports(conn, "id = ?", (r.id,))[0]
            conn.execute("DELETE FROM ip_allocations WHERE port_id = ?", (r.id,))
            conn.execute("DELETE FROM ports WHERE id = ?", (r.id,))
        return port

    def ensure_dhcp_port(self, network: str, host: str) -> tuple[model.Port, bool]:
        """This node's DHCP port on the network: an address on every DHCP-enabled subnet.

        Returns (port, changed). A subnet added later gets an address on the next call.
        A complete port is answered from a read: no write transaction, so the revision does
        not move (each move makes every agent rebuild its index and every metadata service
        drop its cache).
        """
        with self._read() as conn:
            nrow, subs, row, missing = self._dhcp_port_state(conn, network, host)
            if row is not None and not missing:
                return self._ports(conn, "id = ?", (row.id,))[0], False
        with self._write() as conn:
            nrow, subs, row, missing = self._dhcp_port_state(conn, network, host)
            changed = bool(missing) or row is None
            if row is None:
                pid = str(uuid.uuid4())
                conn.insert("ports", {
                    "id": pid, "network_id": nrow.id, "name": f"dhcp-{host}"[:255],
                    "mac_address": self._free_mac(conn, nrow.id),
                    "device_id": f"dhcp-{host}"[:255], "device_owner": model.DHCP_OWNER,
                    "project_id": nrow.project_id, "host": host})
                have = 0
            else:
                pid = row.id
                have = len(subs) - len(missing)
            if missing:
                self._allocate(conn, nrow, pid, [{"subnet": s.id} for s in missing], start_pos=have)
            port = self._ports(conn, "id = ?", (pid,))[0]
        return port, changed

    def _dhcp_port_state(self, conn: Connection, network: str, host: str):
        """(network row, DHCP-enabled subnets, this host's DHCP port row or None, subnets
        where that port has no address yet)."""
        nrow = self._resolve(conn, "networks", network, "net")
        subs = conn.execute("SELECT * FROM subnets WHERE network_id = ? AND enable_dhcp = ? "
                            "ORDER BY ip_version, cidr", (nrow.id, True)).all()
        if not subs:
            raise BadInput(f"network {nrow.name} has no DHCP-enabled subnet: "
                           f"mdtool subnet-create {nrow.name} CIDR --no-gateway")
        row = conn.execute("SELECT * FROM ports WHERE network_id = ? AND device_owner = ? "
                           "AND host = ?", (nrow.id, model.DHCP_OWNER, host)).first()
        have: set[str] = set()
        if row is not None:
            have = set(conn.execute("SELECT subnet_id FROM ip_allocations WHERE port_id = ?",
                                    (row.id,)).scalars())
        return nrow, subs, row, [s for s in subs if s.id not in have]

    def dhcp_ports(self, network: str | None = None) -> list[model.Port]:
        return [p for p in self.list_ports(network) if p.device_owner == model.DHCP_OWNER]

    # -- instances ----------------------------------------------------------------------

    def create_instance(self, name: str, *, project_id: str = "admin", hostname: str | None = None,
                        user_data: bytes | None = None, key_name: str | None = None,
                        public_key: str | None = None, meta: dict[str, str] | None = None,
                        vendor_data: dict | None = None, availability_zone: str = "nova",
                        instance_id: str | None = None,
                        flavor: str = model.DEFAULT_FLAVOR) -> model.Instance:
        """Record an instance; ``instance_id`` keeps a real Nova's UUID (for interop)."""
        v.name(name, "instance name")
        v.project_id(project_id)
        host = v.hostname(hostname) if hostname else v.hostname_from_name(name)
        self._check_user_data(user_data)
        keys = {}
        if key_name or public_key:
            if not (key_name and public_key):
                raise BadInput("--key-name and --public-key go together")
            keys[v.name(key_name, "key name")] = public_key
        self._check_vendor_data(vendor_data)
        v.name(flavor, "flavor name")
        iid = v.uuid(instance_id, "instance id") if instance_id else str(uuid.uuid4())
        with self._write() as conn:
            if conn.execute("SELECT id FROM instances WHERE id = ?", (iid,)).first():
                raise Conflict(f"an instance with id {iid} already exists")
            conn.insert("instances", dict(
                id=iid, name=name, hostname=host, project_id=project_id, key_name=key_name,
                public_keys=keys, meta=meta or {}, user_data=user_data, vendor_data=vendor_data,
                availability_zone=availability_zone, launch_index=0, password=None,
                flavor=flavor, created_at=_now()))
        return self.get_instance(iid)

    @staticmethod
    def _check_user_data(user_data: bytes | None) -> None:
        if user_data is not None and len(user_data) > USER_DATA_MAX:
            raise BadInput(f"user-data is {len(user_data)} bytes; at most {USER_DATA_MAX} are allowed")

    @staticmethod
    def _check_vendor_data(vendor_data) -> None:
        if vendor_data is not None and len(json.dumps(vendor_data)) > VENDOR_DATA_MAX:
            raise BadInput(f"vendor data is larger than {VENDOR_DATA_MAX} bytes")

    def list_instances(self) -> list[model.Instance]:
        with self._read() as conn:
            return [self._instance_view(r) for r in
                    conn.execute("SELECT * FROM instances ORDER BY name, id")]

    def get_instance(self, ref: str) -> model.Instance:
        with self._read() as conn:
            return self._instance_view(self._resolve(conn, "instances", ref, "instance"))

    def update_instance(self, ref: str, *, name: str | None = None, hostname: str | None = None,
                        user_data: bytes | None = None, clear_user_data: bool = False,
                        meta: dict[str, str] | None = None, unset_meta: Iterable[str] = (),
                        key_name: str | None = None, public_key: str | None = None,
                        vendor_data: dict | None = None,
                        flavor: str | None = None) -> model.Instance:
        self._check_user_data(user_data)
        self._check_vendor_data(vendor_data)
        values: dict = {}
        if flavor is not None:
            values["flavor"] = v.name(flavor, "flavor name")
        if name is not None:
            values["name"] = v.name(name, "instance name")
        if hostname is not None:
            values["hostname"] = v.hostname(hostname)
        if user_data is not None:
            values["user_data"] = user_data
        if clear_user_data:
            values["user_data"] = None
        if vendor_data is not None:
            values["vendor_data"] = vendor_data
        if bool(key_name) != bool(public_key):
            raise BadInput("--key-name and --public-key go together")
        with self._write() as conn:
            r = self._resolve(conn, "instances", ref, "instance")
            if meta or unset_meta:
                m = dict(r.meta)
                m.update(meta or {})
                for k in unset_meta:
                    m.pop(k, None)
                values["meta"] = m
            if key_name:
                keys = dict(r.public_keys)
                keys[v.name(key_name, "key name")] = public_key
                values.update(public_keys=keys, key_name=r.key_name or key_name)
            if values:
                conn.update("instances", values, "id = ?", (r.id,))
        return self.get_instance(r.id)

    def delete_instance(self, ref: str) -> tuple[model.Instance, list[model.Port]]:
        """Delete the instance and, as Nova does, the compute ports bound to it."""
        with self._write() as conn:
            r = self._resolve(conn, "instances", ref, "instance")
            ports = self._ports(conn, "device_id = ? AND device_owner = ?",
                                (r.id, model.COMPUTE_OWNER))
            ids = [p.id for p in ports]
            if ids:
                conn.execute(f"DELETE FROM ip_allocations WHERE port_id IN ({_marks(ids)})", ids)
                conn.execute(f"DELETE FROM ports WHERE id IN ({_marks(ids)})", ids)
            conn.update("ports", {"device_id": ""}, "device_id = ?", (r.id,))
            conn.execute("DELETE FROM instances WHERE id = ?", (r.id,))
            return self._instance_view(r), ports

    def set_instance_password(self, instance_id: str, password: str) -> bool:
        """Store the instance's password once; False when one is already set."""
        with self._write() as conn:
            return conn.update("instances", {"password": password},
                               "id = ? AND password IS NULL", (instance_id,)) == 1

    def clear_instance_password(self, ref: str) -> tuple[model.Instance, bool]:
        """Forget the stored password (Nova's clear-password): the instance may POST a new
        one. Returns the instance and whether a password was set."""
        with self._write() as conn:
            r = self._resolve(conn, "instances", ref, "instance")
            if r.password is None:
                return self._instance_view(r), False
            conn.update("instances", {"password": None}, "id = ?", (r.id,))
            return self._instance_view(r), True


_REGISTRIES: dict[str, Registry] = {}


def open_registry(url: str) -> Registry:
    """One Registry (engine and pool) per URL and process."""
    reg = _REGISTRIES.get(url)
    if reg is None:
        reg = _REGISTRIES[url] = Registry(url)
    return reg
