"""Neutron 29's own ``MetadataProxyHandlerBase._proxy_request``: the requests of the
payload, sent by Neutron's metadata agent code to a metadata service (mdtool's, in the
test). Neutron looks the port up over RPC first; that lookup is the only part left out:
the payload names the instance and project.

Payload: ``url`` (http://host:port of the metadata service), ``secret``,
``instance_id``, ``project_id``, ``remote_ip``, ``requests`` (method, path, body).
Answers one ``{status, content_type, body}`` per request, or ``{error}`` when Neutron's
code raises (e.g. "Unexpected response code: 405").
"""

import types
import urllib.parse


def main(payload):
    import webob
    from neutron.agent.metadata import proxy_base

    url = urllib.parse.urlsplit(payload["url"])
    conf = types.SimpleNamespace(
        nova_metadata_host=url.hostname, nova_metadata_port=url.port,
        nova_metadata_protocol=url.scheme, nova_metadata_insecure=False, auth_ca_cert=None,
        nova_client_cert=None, nova_client_priv_key=None,
        metadata_proxy_shared_secret=payload["secret"])
    class Handler(proxy_base.MetadataProxyHandlerBase):
        def get_port(self, *args, **kwargs):  # the RPC lookup: the payload names the port
            raise NotImplementedError

    handler = Handler(conf)
    out = []
    for r in payload["requests"]:
        req = webob.Request.blank(r["path"], method=r["method"], body=r["body"].encode(),
                                  headers={"X-Forwarded-For": payload["remote_ip"]})
        req.response = webob.Response()  # what webob.dec.wsgify gives Neutron's handler
        try:
            resp = handler._proxy_request(payload["instance_id"], payload["project_id"], req)
        except Exception as e:  # noqa: BLE001 (reported to the test, which fails on it)
            out.append({"error": f"{type(e).__name__}: {e}"})
            continue
        out.append({"status": resp.status_int, "content_type": resp.content_type,
                    "body": resp.body.decode("utf-8", "replace")})
    return out
