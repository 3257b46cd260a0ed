-- A v5 registry written by the SQLAlchemy registry (main c64332c), dumped by: sqlite3 DB .dump
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE registry_state (
	id INTEGER NOT NULL, 
	schema_version INTEGER NOT NULL, 
	revision BIGINT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO registry_state VALUES(1,5,12);
CREATE TABLE networks (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	bridge VARCHAR(15) NOT NULL, 
	mtu INTEGER NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO networks VALUES('0f5aba2a-e55b-4a39-97e3-845400d37574','old-net','brq0f5aba2a-e5',1450,'p1','2026-12-03T04:24:50Z');
CREATE TABLE instances (
	id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	hostname VARCHAR(253) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	key_name VARCHAR(255), 
	public_keys JSON NOT NULL, 
	meta JSON NOT NULL, 
	user_data BLOB, 
	vendor_data JSON, 
	availability_zone VARCHAR(255) NOT NULL, 
	launch_index INTEGER NOT NULL, 
	password TEXT, 
	created_at VARCHAR(32) NOT NULL, 
	flavor VARCHAR(255) DEFAULT 'm1.small' NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO instances VALUES('deabd591-f76f-4f45-87d1-0de838a8ea06','old-vm','old-vm','admin','k1','{"k1": "ssh-ed25519 AAAA old"}','{"role": "db"}',X'23636c6f75642d636f6e6669670a00ff2062696e617279','null','nova',0,'old-password','2026-12-03T04:24:50Z','m1.tiny');
INSERT INTO instances VALUES('0f0e0d0c-0b0a-4909-8807-060504030201','old-vm2','old-vm2','admin',NULL,'{}','{}',NULL,'{"v": [1, 2]}','nova',0,NULL,'2026-12-03T04:24:50Z','m1.small');
CREATE TABLE subnets (
	id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	cidr VARCHAR(64) NOT NULL, 
	ip_version INTEGER NOT NULL, 
	gateway_ip VARCHAR(64), 
	enable_dhcp BOOLEAN NOT NULL, 
	allocation_pools JSON NOT NULL, 
	dns_nameservers JSON NOT NULL, 
	host_routes JSON NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	ipv6_address_mode VARCHAR(32), 
	ipv6_ra_mode VARCHAR(32), 
	PRIMARY KEY (id), 
	FOREIGN KEY(network_id) REFERENCES networks (id)
);
INSERT INTO subnets VALUES('18463e29-3f98-4eba-9a51-dde5ee7589b4','0f5aba2a-e55b-4a39-97e3-845400d37574','old-v4','10.77.0.0/24',4,'10.77.0.1',1,'[{"start": "10.77.0.10", "end": "10.77.0.99"}]','["10.77.0.53"]','[{"destination": "192.168.50.0/24", "nexthop": "10.77.0.254"}]','p1',NULL,NULL);
INSERT INTO subnets VALUES('3c3d5be5-e4c1-42c7-a5de-46add5f0f7f4','0f5aba2a-e55b-4a39-97e3-845400d37574','old-v6','fd77::/64',6,'fd77::1',1,'[{"start": "fd77::2", "end": "fd77::ffff:ffff:ffff:ffff"}]','[]','[]','p1','slaac','slaac');
INSERT INTO subnets VALUES('6d0b85e0-5727-4a45-9f63-20b8f9793444','0f5aba2a-e55b-4a39-97e3-845400d37574','old-nodhcp','10.78.0.0/24',4,NULL,0,'[{"start": "10.78.0.1", "end": "10.78.0.254"}]','[]','[]','p1',NULL,NULL);
CREATE TABLE ports (
	id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	mac_address VARCHAR(17) NOT NULL, 
	device_id VARCHAR(255) NOT NULL, 
	device_owner VARCHAR(255) NOT NULL, 
	project_id VARCHAR(64) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	port_security_enabled BOOLEAN DEFAULT 1 NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_ports_network_mac UNIQUE (network_id, mac_address), 
	FOREIGN KEY(network_id) REFERENCES networks (id)
);
INSERT INTO ports VALUES('f3568bd2-9b75-4c68-9f85-66d9552e2fdb','0f5aba2a-e55b-4a39-97e3-845400d37574','old-port','fa:16:3e:00:77:01','deabd591-f76f-4f45-87d1-0de838a8ea06','compute:nova','admin','',1);
INSERT INTO ports VALUES('e7c5d90a-6d9a-4998-a59e-b465f67c19af','0f5aba2a-e55b-4a39-97e3-845400d37574','old-nosec','fa:16:3e:00:77:02','','','p1','',0);
INSERT INTO ports VALUES('bdf1ce82-de62-4df8-9f84-418b4c9db702','0f5aba2a-e55b-4a39-97e3-845400d37574','dhcp-old-host','fa:16:3e:cb:a6:0d','dhcp-old-host','network:dhcp','p1','old-host',1);
CREATE TABLE network_hosts (
	network_id VARCHAR(36) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	CONSTRAINT pk_network_hosts PRIMARY KEY (network_id, host), 
	FOREIGN KEY(network_id) REFERENCES networks (id) ON DELETE CASCADE
);
INSERT INTO network_hosts VALUES('0f5aba2a-e55b-4a39-97e3-845400d37574','old-host','2026-12-03T04:24:50Z');
CREATE TABLE ip_allocations (
	port_id VARCHAR(36) NOT NULL, 
	subnet_id VARCHAR(36) NOT NULL, 
	network_id VARCHAR(36) NOT NULL, 
	ip_address VARCHAR(64) NOT NULL, 
	position INTEGER NOT NULL, 
	CONSTRAINT pk_ip_allocations PRIMARY KEY (network_id, ip_address), 
	FOREIGN KEY(port_id) REFERENCES ports (id) ON DELETE CASCADE, 
	FOREIGN KEY(subnet_id) REFERENCES subnets (id)
);
INSERT INTO ip_allocations VALUES('f3568bd2-9b75-4c68-9f85-66d9552e2fdb','18463e29-3f98-4eba-9a51-dde5ee7589b4','0f5aba2a-e55b-4a39-97e3-845400d37574','10.77.0.10',0);
INSERT INTO ip_allocations VALUES('f3568bd2-9b75-4c68-9f85-66d9552e2fdb','3c3d5be5-e4c1-42c7-a5de-46add5f0f7f4','0f5aba2a-e55b-4a39-97e3-845400d37574','fd77::f816:3eff:fe00:7701',1);
INSERT INTO ip_allocations VALUES('e7c5d90a-6d9a-4998-a59e-b465f67c19af','18463e29-3f98-4eba-9a51-dde5ee7589b4','0f5aba2a-e55b-4a39-97e3-845400d37574','10.77.0.11',0);
INSERT INTO ip_allocations VALUES('e7c5d90a-6d9a-4998-a59e-b465f67c19af','3c3d5be5-e4c1-42c7-a5de-46add5f0f7f4','0f5aba2a-e55b-4a39-97e3-845400d37574','fd77::f816:3eff:fe00:7702',1);
INSERT INTO ip_allocations VALUES('bdf1ce82-de62-4df8-9f84-418b4c9db702','18463e29-3f98-4eba-9a51-dde5ee7589b4','0f5aba2a-e55b-4a39-97e3-845400d37574','10.77.0.12',0);
INSERT INTO ip_allocations VALUES('bdf1ce82-de62-4df8-9f84-418b4c9db702','3c3d5be5-e4c1-42c7-a5de-46add5f0f7f4','0f5aba2a-e55b-4a39-97e3-845400d37574','fd77::f816:3eff:fecb:a60d',1);
CREATE INDEX ix_networks_name ON networks (name);
CREATE INDEX ix_instances_name ON instances (name);
CREATE INDEX ix_subnets_network_id ON subnets (network_id);
CREATE INDEX ix_ports_network_id ON ports (network_id);
CREATE INDEX ix_network_hosts_host ON network_hosts (host);
CREATE INDEX ix_ip_allocations_subnet_id ON ip_allocations (subnet_id);
CREATE INDEX ix_ip_allocations_port_id ON ip_allocations (port_id);
COMMIT;
