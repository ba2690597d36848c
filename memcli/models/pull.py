"""Download one model file from the Hugging Face hub (or a mirror): the only network code in memcli.

Standard library only, so that what memcli does on the network fits on a few screens. The download
goes to ``FILE.part`` next to its destination and is renamed into place only once complete and
checked, so a present ``FILE`` is always a whole file. An interrupted download (network failure,
Ctrl-C) keeps its ``.part`` and the next pull resumes it with an HTTP ``Range`` request.

What the file is checked against, in order: the catalog's sha256; else the sha256 the hub announces
for LFS files (``X-Linked-Etag``, or an ``ETag`` that is a sha256 sent by the endpoint's own host);
else nothing, and the result says ``verified=False``.

Redirects are followed by hand rather than by urllib, for two reasons: the hub announces the sha256
on its redirect response, not on the CDN's final one (whose ETag may be a 64-hex hash of some other
kind), and ``HF_TOKEN`` must go to the endpoint only, never to the CDN the hub redirects to.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Protocol, cast
from urllib.parse import quote, urljoin, urlsplit

from memcli.errors import ExitCode, MemcliFailure, config_error, model_error
from memcli.models.catalog import ModelSpec, is_sha256, resolve_spec
from memcli.paths import ensure_private_dir

DEFAULT_ENDPOINT = "https://huggingface.co"
ProgressFn = Callable[[int, int | None], None]

_CHUNK = 1 << 20
_MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "memcli (models pull)"


@dataclass(frozen=True)
class PulledModel:
    """A model file on disk. ``verified``: its sha256 matched a known value (catalog or hub).
    ``resumed``: this pull continued an earlier partial download."""

    name: str
    path: Path
    sha256: str
    size_bytes: int
    verified: bool
    resumed: bool


def hub_url(model: ModelSpec, endpoint: str) -> str:
    """``{endpoint}/{repo}/resolve/{revision}/{filename}``, percent-encoded the way the hub expects."""
    return (
        f"{endpoint.rstrip('/')}/{quote(model.repo, safe='/')}/resolve/"
        f"{quote(model.revision, safe='')}/{quote(model.filename, safe='/')}"
    )


def pull(
    spec: str | ModelSpec,
    models_dir: Path,
    *,
    endpoint: str | None = None,
    progress: ProgressFn | None = None,
    timeout: float = 30.0,
) -> PulledModel:
    """Download ``spec`` (a catalog name, ``hf:OWNER/REPO/FILE.gguf[@REV]`` or a :class:`ModelSpec`)
    into ``models_dir`` and return where it is.

    A file already there is hashed instead of downloaded again when its expected sha256 is known
    (for ``hf:`` specs that costs one HEAD request to learn it). ``progress(done, total)`` is called
    as bytes arrive; ``total`` is ``None`` when neither the server nor the catalog gives a size.
    Raises :class:`MemcliFailure`: ``NETWORK`` for download failures (the partial file is kept and the
    next pull resumes), ``MODEL`` for a checksum mismatch (the download is deleted).
    """
    model = spec if isinstance(spec, ModelSpec) else resolve_spec(spec)
    url = hub_url(model, _endpoint(endpoint))
    ensure_private_dir(models_dir)
    final = models_dir / model.local_name
    part = final.with_name(final.name + ".part")
    fetch = _Fetcher(url, os.environ.get("HF_TOKEN") or None, timeout)
    if final.is_file():
        present = _already_present(model, final, fetch)
        if present is not None:
            return present
    return _download(model, final, part, fetch, progress)


def _endpoint(endpoint: str | None) -> str:
    value = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise config_error(
            f"The hub endpoint {value!r} is not an http(s) URL.",
            hint="Set HF_ENDPOINT to a URL such as https://huggingface.co, or unset it.",
        )
    return value.rstrip("/")


def _already_present(model: ModelSpec, final: Path, fetch: _Fetcher) -> PulledModel | None:
    expected = model.sha256
    if expected is None:
        with contextlib.closing(fetch.open("HEAD", {}).body):
            expected = fetch.announced_sha256
    digest = hashlib.sha256()
    _hash_file(digest, final)
    size = final.stat().st_size
    if expected is None:
        # Only a complete download is ever renamed to this name, and nothing says it is stale.
        return PulledModel(model.name, final, digest.hexdigest(), size, verified=False, resumed=False)
    if digest.hexdigest() == expected:
        return PulledModel(model.name, final, expected, size, verified=True, resumed=False)
    return None  # changed upstream or damaged here: download again, replacing it when complete


def _download(model: ModelSpec, final: Path, part: Path, fetch: _Fetcher, progress: ProgressFn | None) -> PulledModel:
    offset = part.stat().st_size if part.is_file() else 0
    reply = fetch.open("GET", {"Range": f"bytes={offset}-"} if offset else {})
    with contextlib.closing(reply.body):
        digest = hashlib.sha256()
        if reply.status == 416 and offset:
            if _range_total(reply.headers) != offset:  # the part cannot be a prefix of this file
                part.unlink()
                return _download(model, final, part, fetch, progress)
            _hash_file(digest, part)
            return _finish(model, final, part, fetch, digest, offset, resumed=True)
        if reply.status == 206 and offset:
            start, total = _content_range(reply.headers)
            if start != offset:
                part.unlink()
                return _download(model, final, part, fetch, progress)
            _hash_file(digest, part)
            resumed = True
        elif reply.status == 200:
            offset, total, resumed = 0, _int_header(reply.headers, "Content-Length"), False
        else:
            raise fetch.unexpected(reply.status)
        done = _stream(reply.body, part, digest, offset, total or model.size_bytes, fetch, progress)
    if total is not None and done != total:
        if done > total:
            part.unlink()
        raise MemcliFailure(
            f"Download of {fetch.url} stopped at {done} of {total} bytes.",
            hint=_retry_hint(part) if done < total else "Run the same command again.",
            code=ExitCode.NETWORK,
        )
    return _finish(model, final, part, fetch, digest, done, resumed=resumed)


def _stream(
    body: _Body,
    part: Path,
    digest: _Digest,
    done: int,
    total: int | None,
    fetch: _Fetcher,
    progress: ProgressFn | None,
) -> int:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if done else os.O_TRUNC) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(part, flags, 0o600), "ab" if done else "wb") as out:
        if progress is not None:
            progress(done, total)
        while True:
            try:
                chunk = body.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise fetch.network_failure(exc, part) from exc
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as exc:
                raise MemcliFailure(
                    f"Could not write {part}: {exc.strerror or exc}.",
                    hint="Free some disk space, then run the same command again to resume.",
                    code=ExitCode.NETWORK,
                ) from exc
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    return done


def _finish(
    model: ModelSpec,
    final: Path,
    part: Path,
    fetch: _Fetcher,
    digest: _Digest,
    size: int,
    *,
    resumed: bool,
) -> PulledModel:
    actual = digest.hexdigest()
    expected = model.sha256 or fetch.announced_sha256
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise model_error(
            f"Checksum mismatch for {model.name} from {fetch.url}: expected sha256 {expected}, "
            f"got {actual}. The downloaded file was deleted.",
            hint="Run the same command again. If it fails the same way, the server is not serving "
            "the file memcli expects (check HF_ENDPOINT, or report the catalog entry).",
        )
    os.chmod(part, 0o600)
    os.replace(part, final)
    return PulledModel(model.name, final, actual, size, verified=expected is not None, resumed=resumed)


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Body(Protocol):
    def read(self, amt: int, /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Message
    body: _Body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand every 3xx back to :class:`_Fetcher` (as an HTTPError) instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class _Fetcher:
    """One URL: opens it following redirects by hand, remembers the sha256 the hub announced."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.announced_sha256: str | None = None
        self._origin = _origin(url)

    def open(self, method: str, headers: dict[str, str]) -> _Reply:
        current = self.url
        for _ in range(_MAX_REDIRECTS + 1):
            same_host = _origin(current) == self._origin
            request = urllib.request.Request(current, method=method, headers=headers)
            request.add_header("User-Agent", _USER_AGENT)
            if self.token and same_host:
                request.add_header("Authorization", f"Bearer {self.token}")
            try:
                response = _OPENER.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as err:
                self._note_sha256(err.headers, same_host)
                location = err.headers.get("Location")
                if err.code in _REDIRECTS and location:
                    err.close()
                    current = self._follow(current, location)
                    continue
                if err.code == 416:
                    return _Reply(err.code, err.headers, cast(_Body, err))
                err.close()
                raise self.http_failure(err.code) from None
            except (OSError, http.client.HTTPException) as exc:
                raise self.network_failure(exc, None) from exc
            reply = _Reply(int(response.status), response.headers, cast(_Body, response))
            self._note_sha256(reply.headers, same_host)
            return reply
        raise MemcliFailure(
            f"Too many redirects while downloading {self.url}.",
            hint="Check HF_ENDPOINT; a mirror or proxy may be redirecting in a loop.",
            code=ExitCode.NETWORK,
        )

    def _follow(self, current: str, location: str) -> str:
        target = urljoin(current, location)
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https") or (urlsplit(current).scheme == "https" and scheme == "http"):
            raise MemcliFailure(
                f"Refusing a redirect from {self.url} to a {scheme or 'schemeless'} URL.",
                hint="Check HF_ENDPOINT; memcli only follows redirects to https (or http from http).",
                code=ExitCode.NETWORK,
            )
        return target

    def _note_sha256(self, headers: Message, same_host: bool) -> None:
        # X-Linked-Etag is the hub's own header for the LFS object id; a plain ETag is trusted only
        # from the endpoint's host, since CDNs put other 64-hex hashes there.
        for name, trusted in (("X-Linked-Etag", True), ("ETag", same_host)):
            value = _strip_etag(headers.get(name, ""))
            if trusted and is_sha256(value) and self.announced_sha256 is None:
                self.announced_sha256 = value

    def http_failure(self, code: int) -> MemcliFailure:
        if code in (401, 403):
            hint = (
                "HF_TOKEN is set but was not accepted: check that it is valid and that your account "
                "has accepted this model's terms on its page."
                if self.token
                else "The repository may be gated or private (accept its terms on the model page and "
                "set HF_TOKEN to a read token), or its name may be misspelt."
            )
            return _net(f"The hub refused {self.url} (HTTP {code}).", hint)
        if code == 404:
            return _net(
                f"Not found: {self.url} (HTTP 404).",
                "Check the repository id, the file name (case matters) and the revision.",
            )
        if code == 429:
            return _net(
                f"The hub is rate-limiting downloads of {self.url} (HTTP 429).",
                "Wait a few minutes and run the same command again; a partial download resumes.",
            )
        return self.unexpected(code)

    def unexpected(self, code: int) -> MemcliFailure:
        return _net(
            f"Download of {self.url} failed with HTTP {code}.",
            "Try again later; a partial download is kept and resumes. If it persists, check HF_ENDPOINT.",
        )

    def network_failure(self, exc: BaseException, part: Path | None) -> MemcliFailure:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        host = urlsplit(self.url).hostname or self.url
        if isinstance(reason, socket.gaierror):
            what, hint = f"could not resolve the host name {host}", "Check that you are online."
        elif isinstance(reason, ConnectionRefusedError):
            what, hint = f"{host} refused the connection", "Check that you are online."
        elif isinstance(reason, TimeoutError):
            what = f"no answer from {host} within {self.timeout:g} s"
            hint = "Check that you are online; on a slow link, allow a longer timeout."
        elif isinstance(reason, ssl.SSLError):
            what = f"the TLS connection to {host} failed ({reason})"
            hint = "Check the system clock and certificates; a proxy may be intercepting TLS."
        else:
            detail = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
            what, hint = f"the connection to {host} failed ({detail})", "Check that you are online."
        if not self.url.startswith(DEFAULT_ENDPOINT + "/"):
            hint += " HF_ENDPOINT points at a mirror: check that it is up."
        if part is not None:
            hint += " " + _retry_hint(part)
        return _net(f"Download of {self.url} failed: {what}.", hint)


def _net(message: str, hint: str) -> MemcliFailure:
    return MemcliFailure(message, hint=hint, code=ExitCode.NETWORK)


def _retry_hint(part: Path) -> str:
    return f"The partial download is kept in {part}; run the same command again to resume."


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _strip_etag(value: str) -> str:
    value = value.strip()
    value = value.removeprefix("W/")
    return value.strip('"').lower()


def _int_header(headers: Message, name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def _content_range(headers: Message) -> tuple[int | None, int | None]:
    """``Content-Range: bytes START-END/TOTAL`` as (START, TOTAL); None where absent or ``*``."""
    value = headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    span, _, total = rest.partition("/")
    start = span.partition("-")[0]
    if unit != "bytes":
        return None, None
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


def _range_total(headers: Message) -> int | None:
    return _content_range(headers)[1]


def _hash_file(digest: _Digest, path: Path) -> None:
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
