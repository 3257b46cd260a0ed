-- A v5 registry written by the SQLAlchemy registry (main c64332c), dumped by: pg_dump --inserts --no-owner --no-privileges

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TABLE public.instances (
    id character varying(36) NOT NULL,
    name character varying(255) NOT NULL,
    hostname character varying(253) NOT NULL,
    project_id character varying(64) NOT NULL,
    key_name character varying(255),
    public_keys json NOT NULL,
    meta json NOT NULL,
    user_data bytea,
    vendor_data json,
    availability_zone character varying(255) NOT NULL,
    launch_index integer NOT NULL,
    password text,
    created_at character varying(32) NOT NULL,
    flavor character varying(255) DEFAULT 'm1.small'::character varying NOT NULL
);

CREATE TABLE public.ip_allocations (
    port_id character varying(36) NOT NULL,
    subnet_id character varying(36) NOT NULL,
    network_id character varying(36) NOT NULL,
    ip_address character varying(64) NOT NULL,
    "position" integer NOT NULL
);

CREATE TABLE public.network_hosts (
    network_id character varying(36) NOT NULL,
    host character varying(255) NOT NULL,
    created_at character varying(32) NOT NULL
);

CREATE TABLE public.networks (
    id character varying(36) NOT NULL,
    name character varying(255) NOT NULL,
    bridge character varying(15) NOT NULL,
    mtu integer NOT NULL,
    project_id character varying(64) NOT NULL,
    created_at character varying(32) NOT NULL
);

CREATE TABLE public.ports (
    id character varying(36) NOT NULL,
    network_id character varying(36) NOT NULL,
    name character varying(255) NOT NULL,
    mac_address character varying(17) NOT NULL,
    device_id character varying(255) NOT NULL,
    device_owner character varying(255) NOT NULL,
    project_id character varying(64) NOT NULL,
    host character varying(255) NOT NULL,
    port_security_enabled boolean DEFAULT true NOT NULL
);

CREATE TABLE public.registry_state (
    id integer NOT NULL,
    schema_version integer NOT NULL,
    revision bigint NOT NULL
);

CREATE SEQUENCE public.registry_state_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.registry_state_id_seq OWNED BY public.registry_state.id;

CREATE TABLE public.subnets (
    id character varying(36) NOT NULL,
    network_id character varying(36) NOT NULL,
    name character varying(255) NOT NULL,
    cidr character varying(64) NOT NULL,
    ip_version integer NOT NULL,
    gateway_ip character varying(64),
    enable_dhcp boolean NOT NULL,
    allocation_pools json NOT NULL,
    dns_nameservers json NOT NULL,
    host_routes json NOT NULL,
    project_id character varying(64) NOT NULL,
    ipv6_address_mode character varying(32),
    ipv6_ra_mode character varying(32)
);

ALTER TABLE ONLY public.registry_state ALTER COLUMN id SET DEFAULT nextval('public.registry_state_id_seq'::regclass);

INSERT INTO public.instances VALUES ('0f0e0d0c-0b0a-4909-8807-060504030201', 'old-vm2', 'old-vm2', 'admin', NULL, '{}', '{}', NULL, '{"v": [1, 2]}', 'nova', 0, NULL, '2026-12-03T04:25:28Z', 'm1.small');
INSERT INTO public.instances VALUES ('e44443b6-31ce-48db-9dda-5da60ae0678d', 'old-vm', 'old-vm', 'admin', 'k1', '{"k1": "ssh-ed25519 AAAA old"}', '{"role": "db"}', '\x23636c6f75642d636f6e6669670a00ff2062696e617279', 'null', 'nova', 0, 'old-password', '2026-12-03T04:25:28Z', 'm1.tiny');

INSERT INTO public.ip_allocations VALUES ('7dec3ae3-7c13-498f-882e-caffbd9f88b2', 'f61d79e8-4e43-4ecf-b3f8-f1d262213dd8', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', '10.77.0.10', 0);
INSERT INTO public.ip_allocations VALUES ('7dec3ae3-7c13-498f-882e-caffbd9f88b2', '62061ba4-8dd2-4315-8936-cf739d02b38e', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'fd77::f816:3eff:fe00:7701', 1);
INSERT INTO public.ip_allocations VALUES ('1fd380a0-9739-4081-80cc-5ae035e9fd79', 'f61d79e8-4e43-4ecf-b3f8-f1d262213dd8', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', '10.77.0.11', 0);
INSERT INTO public.ip_allocations VALUES ('1fd380a0-9739-4081-80cc-5ae035e9fd79', '62061ba4-8dd2-4315-8936-cf739d02b38e', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'fd77::f816:3eff:fe00:7702', 1);
INSERT INTO public.ip_allocations VALUES ('ed1cd884-5508-4345-a6ec-96cbef117bea', 'f61d79e8-4e43-4ecf-b3f8-f1d262213dd8', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', '10.77.0.12', 0);
INSERT INTO public.ip_allocations VALUES ('ed1cd884-5508-4345-a6ec-96cbef117bea', '62061ba4-8dd2-4315-8936-cf739d02b38e', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'fd77::f816:3eff:fe80:3943', 1);

INSERT INTO public.network_hosts VALUES ('bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-host', '2026-12-03T04:25:28Z');

INSERT INTO public.networks VALUES ('bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-net', 'brqbef2f404-8c', 1450, 'p1', '2026-12-03T04:25:28Z');

INSERT INTO public.ports VALUES ('7dec3ae3-7c13-498f-882e-caffbd9f88b2', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-port', 'fa:16:3e:00:77:01', 'e44443b6-31ce-48db-9dda-5da60ae0678d', 'compute:nova', 'admin', '', true);
INSERT INTO public.ports VALUES ('1fd380a0-9739-4081-80cc-5ae035e9fd79', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-nosec', 'fa:16:3e:00:77:02', '', '', 'p1', '', false);
INSERT INTO public.ports VALUES ('ed1cd884-5508-4345-a6ec-96cbef117bea', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'dhcp-old-host', 'fa:16:3e:80:39:43', 'dhcp-old-host', 'network:dhcp', 'p1', 'old-host', true);

INSERT INTO public.registry_state VALUES (1, 5, 12);

INSERT INTO public.subnets VALUES ('f61d79e8-4e43-4ecf-b3f8-f1d262213dd8', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-v4', '10.77.0.0/24', 4, '10.77.0.1', true, '[{"start": "10.77.0.10", "end": "10.77.0.99"}]', '["10.77.0.53"]', '[{"destination": "192.168.50.0/24", "nexthop": "10.77.0.254"}]', 'p1', NULL, NULL);
INSERT INTO public.subnets VALUES ('62061ba4-8dd2-4315-8936-cf739d02b38e', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-v6', 'fd77::/64', 6, 'fd77::1', true, '[{"start": "fd77::2", "end": "fd77::ffff:ffff:ffff:ffff"}]', '[]', '[]', 'p1', 'slaac', 'slaac');
INSERT INTO public.subnets VALUES ('2db598d9-a8b8-44c2-bf57-0bac16a4a2d4', 'bef2f404-8c88-4d3c-9786-e653fcd0f010', 'old-nodhcp', '10.78.0.0/24', 4, NULL, false, '[{"start": "10.78.0.1", "end": "10.78.0.254"}]', '[]', '[]', 'p1', NULL, NULL);

SELECT pg_catalog.setval('public.registry_state_id_seq', 1, false);

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.networks
    ADD CONSTRAINT networks_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ip_allocations
    ADD CONSTRAINT pk_ip_allocations PRIMARY KEY (network_id, ip_address);

ALTER TABLE ONLY public.network_hosts
    ADD CONSTRAINT pk_network_hosts PRIMARY KEY (network_id, host);

ALTER TABLE ONLY public.ports
    ADD CONSTRAINT ports_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.registry_state
    ADD CONSTRAINT registry_state_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.subnets
    ADD CONSTRAINT subnets_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ports
    ADD CONSTRAINT uq_ports_network_mac UNIQUE (network_id, mac_address);

CREATE INDEX ix_instances_name ON public.instances USING btree (name);

CREATE INDEX ix_ip_allocations_port_id ON public.ip_allocations USING btree (port_id);

CREATE INDEX ix_ip_allocations_subnet_id ON public.ip_allocations USING btree (subnet_id);

CREATE INDEX ix_network_hosts_host ON public.network_hosts USING btree (host);

CREATE INDEX ix_networks_name ON public.networks USING btree (name);

CREATE INDEX ix_ports_network_id ON public.ports USING btree (network_id);

CREATE INDEX ix_subnets_network_id ON public.subnets USING btree (network_id);

ALTER TABLE ONLY public.ip_allocations
    ADD CONSTRAINT ip_allocations_port_id_fkey FOREIGN KEY (port_id) REFERENCES public.ports(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.ip_allocations
    ADD CONSTRAINT ip_allocations_subnet_id_fkey FOREIGN KEY (subnet_id) REFERENCES public.subnets(id);

ALTER TABLE ONLY public.network_hosts
    ADD CONSTRAINT network_hosts_network_id_fkey FOREIGN KEY (network_id) REFERENCES public.networks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.ports
    ADD CONSTRAINT ports_network_id_fkey FOREIGN KEY (network_id) REFERENCES public.networks(id);

ALTER TABLE ONLY public.subnets
    ADD CONSTRAINT subnets_network_id_fkey FOREIGN KEY (network_id) REFERENCES public.networks(id);

