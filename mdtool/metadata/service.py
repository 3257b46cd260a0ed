"""The Nova-compatible metadata request logic, apart from any server loop.

:class:`MetadataService` checks the headers the agent adds exactly as Nova does (400 when
one is missing, 403 on a bad signature, 404 for an unknown instance or another project),
then answers from :class:`~mdtool.metadata.tree.InstanceDocs` cached per instance and
registry revision. The registry is reached through a narrow :class:`MetadataSource`;
its calls are synchronous, so they run on one worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from http import HTTPStatus
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from mdtool import model
from mdtool.agent.sign import verify_instance_id
from mdtool.errors import NotFound
from mdtool.http.types import Request, Response
from mdtool.metadata.tree import (
    EC2_ROOT, LATEST, MAX_PASSWORD_BYTES, OS_VERSIONS, HTML_TYPE, Doc, InstanceDocs,
)

log = logging.getLogger("mdtool.metadata")

BAD_SIGNATURE = "Invalid proxy request signature."


class MetadataSource(Protocol):
    """What the metadata service needs of the registry (``mdtool.registry`` provides it)."""

    def revision(self) -> int: ...
    def get_instance(self, ref: str) -> model.Instance: ...
    def list_ports(self, network: str | None = None,
                   device_id: str | None = None) -> list[model.Port]: ...
    def get_network(self, ref: str) -> model.Network: ...
    def set_instance_password(self, instance_id: str, password: str) -> bool: ...


# What webob's HTTPException says when Nova gives no explanation of its own.
_NOVA_DEFAULT = {
    404: "The resource could not be found.",
    409: "There was a conflict when trying to complete your request.",
    500: "An unknown error has occurred. Please try your request again.",
}


def _text(status: int, explanation: str | None = None) -> Response:
    """An error as Nova's webob writes it in plain text: status line, explanation."""
    text = explanation or _NOVA_DEFAULT[status]
    return Response.text(status, f"{status} {HTTPStatus(status).phrase}\n\n{text}\n\n   ")


def _doc(doc: Doc) -> Response:
    return Response(200, doc.body, [("Content-Type", doc.content_type)])


def _joined(req: Request, name: str) -> str | None:
    """A header's values joined by commas, as a WSGI server hands repeated ones to Nova."""
    values = [v for k, v in req.headers if k.lower() == name.lower()]
    return ",".join(values) if values else None


def _password_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return (len(parts) == 3 and parts[0] == "openstack" and parts[2] == "password"
            and (parts[1] == LATEST or parts[1] in OS_VERSIONS[1:]))


def _token_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return len(parts) == 3 and parts[1:] == ["api", "token"]


class MetadataService:
    """``await service.handle(request) -> Response``.

    ``follow_source``: ask the source for its revision on every request (simple, for tests
    and embedding). A daemon passes False and calls :meth:`refresh` from a timer instead,
    so a hot instance is answered without touching the database at all.
    """

    def __init__(self, source: MetadataSource, secret: str, *, dhcp_domain: str = "",
                 follow_source: bool = True, max_cached: int = 10000):
        self.source = source
        self.secret = secret
        self.dhcp_domain = dhcp_domain
        self.follow_source = follow_source
        self.max_cached = max_cached
        self.revision: int | None = None
        # Moves whenever a cached document may be dropped (revision moved, forget()):
        # what a cache of this service's answers checks (mdtool/fastpath.py).
        self.generation = 0
        self._docs: dict[str, InstanceDocs] = {}
        self._loading: dict[str, asyncio.Future] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdtool-registry")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # Revision tracking -------------------------------------------------------------

    async def refresh(self) -> bool:
        """Read the registry revision; drop every cached document when it moved."""
        rev = await self._call(self.source.revision)
        return self.note_revision(rev)

    def note_revision(self, rev: int) -> bool:
        if rev == self.revision:
            return False
        self.revision = rev
        self._docs.clear()
        self.generation += 1
        return True

    # Documents ---------------------------------------------------------------------

    def _build(self, instance_id: str, revision: int) -> InstanceDocs:
        instance = self.source.get_instance(instance_id)
        ports = [p for p in self.source.list_ports(device_id=instance.id)
                 if p.device_id == instance.id]
        networks = {}
        for nid in dict.fromkeys(p.network_id for p in ports):
            try:
                networks[nid] = self.source.get_network(nid)
            except NotFound:  # deleted between the two reads; the next revision fixes it
                pass
        return InstanceDocs(instance, ports, networks, dhcp_domain=self.dhcp_domain,
                            revision=revision)

    async def docs_for(self, instance_id: str) -> InstanceDocs | None:
        """The instance's documents, or None when the registry does not know it."""
        if self.follow_source or self.revision is None:
            await self.refresh()
        docs = self._docs.get(instance_id)
        if docs is not None:
            return docs
        pending = self._loading.get(instance_id)
        if pending is None:
            # One registry read per instance however many requests arrive meanwhile.
            pending = asyncio.ensure_future(self._load(instance_id))
            self._loading[instance_id] = pending
            pending.add_done_callback(lambda _f: self._loading.pop(instance_id, None))
        return await asyncio.shield(pending)

    async def _load(self, instance_id: str) -> InstanceDocs | None:
        revision = self.revision
        try:
            docs = await self._call(self._build, instance_id, revision)
        except NotFound:
            return None
        if revision == self.revision:
            if len(self._docs) >= self.max_cached:
                self._docs.pop(next(iter(self._docs)))
            self._docs[instance_id] = docs
        return docs

    def forget(self, instance_id: str) -> None:
        self._docs.pop(instance_id, None)
        self.generation += 1

    # Requests ----------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        path = req.path
        if posixpath.normpath(path) == "/":  # Nova lists the EC2 versions to anyone
            return _doc(EC2_ROOT)
        instance_id = _joined(req, "X-Instance-ID")
        tenant_id = _joined(req, "X-Tenant-ID")
        signature = _joined(req, "X-Instance-ID-Signature")
        if instance_id is None:
            return _text(400, "X-Instance-ID header is missing from request.")
        if signature is None:
            return _text(400, "X-Instance-ID-Signature header is missing from request.")
        if tenant_id is None:
            return _text(400, "X-Tenant-ID header is missing from request.")
        # Several X-Instance-ID headers arrive joined, as a WSGI server hands them to Nova:
        # the joined value's signature does not match (403).
        if not verify_instance_id(self.secret, instance_id, signature):
            log.warning("bad X-Instance-ID-Signature for instance %s from %s",
                        instance_id, req.header("X-Forwarded-For") or req.peer)
            return _text(403, BAD_SIGNATURE)

        # Nova answers every method alike but on the password path (GET or POST only).
        method = req.method.upper()
        if method == "PUT" and _token_path(path):
            # Session tokens (IMDSv2) are the proxy's business, not Nova's.
            return _text(404)
        if _password_path(path) and method not in ("GET", "POST"):
            return _text(400, "GET and POST only are supported.")
        if method == "POST" and not _password_path(path):
            method = "GET"

        try:
            docs = await self.docs_for(instance_id)
        except Exception:
            log.exception("reading instance %s from the registry failed", instance_id)
            return _text(500)
        if docs is None or docs.instance.id != instance_id:  # the registry also takes names
            return _text(404)
        if docs.instance.project_id != tenant_id:
            log.warning("X-Tenant-ID %s does not match the project of instance %s",
                        tenant_id, instance_id)
            return _text(404)

        if method == "POST":
            return await self._set_password(docs, req.body)

        doc = docs.lookup(path)
        if doc is None:
            return _text(404)
        return _doc(doc)

    async def _set_password(self, docs: InstanceDocs, body: bytes) -> Response:
        if len(body) > MAX_PASSWORD_BYTES:
            return _text(400, "Request is too large.")
        if not body:
            # Stored, an empty password would look unset yet block every later POST.
            return _text(400, "Password data is empty.")
        if docs.instance.password:
            return _text(409)
        try:
            password = body.decode("utf-8")
        except UnicodeDecodeError:
            return _text(400, "Password data is not UTF-8.")
        stored = await self._call(self.source.set_instance_password, docs.instance.id, password)
        self.forget(docs.instance.id)  # the next GET must see it, before the revision poll
        if not stored:
            return _text(409)
        return Response(200, b"", [("Content-Type", HTML_TYPE)])
