"""The guards of every web interface (backend, gallery, web app): path confinement, safe file names, token checks,
upload limits, decode-to-validate, loopback addresses."""

from __future__ import annotations

import errno
import hmac
import ipaddress
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from anydepth.errors import AnyDepthError
from anydepth.io.images import IMAGE_SUFFIXES
from anydepth.io.inputs import VIDEO_SUFFIXES


class ServiceError(AnyDepthError):
    """A request the service refuses; ``status`` is the HTTP code it answers with, ``headers`` go along."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100


def confine(root: Path, relative: str) -> Path:
    """``relative`` resolved inside ``root``; refuses anything that would leave it.

    Refused: ``..`` segments that climb out, absolute paths, symlinks whose target lies outside ``root``, NUL
    bytes and backslashes. URL-encoded forms (``%2e%2e``) reach here decoded once by the web framework; a
    remaining ``%`` is refused too, so a double encoding cannot be decoded into a climb further down the line.
    A path the operating system refuses to look up (a name over 255 bytes, a symlink loop) is refused here, so
    that no later ``exists()`` or ``open()`` of it raises; one that merely names nothing is returned.

    Raises:
        ServiceError: 403 when the path leaves the root or has a forbidden character; 4xx (see
            :func:`path_error`) when the system refuses the path.
    """
    if not relative or "\x00" in relative or "\\" in relative or "%" in relative:
        raise ServiceError(403, f"path {_shown(relative)} is not allowed")
    base = Path(root).resolve()
    candidate = resolve_user_path(base / relative, relative)  # follows every symlink on the way
    if not is_inside(candidate, base):
        raise ServiceError(403, f"path {_shown(relative)} is outside the allowed folder")
    probe_user_path(candidate, relative)
    return candidate


def confine_any(roots: Sequence[Path], path: str) -> Path:
    """``path`` (absolute, or relative to the first root) resolved, if it lies inside one of ``roots``; refused as
    :func:`confine` refuses."""
    if not roots:
        raise ServiceError(403, "this server takes no server-side paths (start it with --allowed-root)")
    if not path or "\x00" in path or "\\" in path or "%" in path:
        raise ServiceError(403, f"path {_shown(path)} is not allowed")
    given = Path(path)
    candidate = resolve_user_path(given if given.is_absolute() else Path(roots[0]) / given, path)
    if not any(is_inside(candidate, Path(r).resolve()) for r in roots):
        raise ServiceError(403, f"path {_shown(path)} is outside the allowed roots")
    probe_user_path(candidate, path)
    return candidate


def resolve_user_path(path: Path, shown: str) -> Path:
    """``path.resolve()``, with a symlink loop (RuntimeError before Python 3.13, OSError after) a 4xx."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:
        raise path_error(exc, shown) from None


def probe_user_path(path: Path, shown: str) -> None:
    """Looks ``path`` up once: nothing there (or a file where a folder should be) is fine, the caller answers
    404; any other refusal of the system becomes the 4xx of :func:`path_error`."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise path_error(exc, shown) from None


def path_error(exc: BaseException, shown: str) -> ServiceError:
    """The client's error for a path (as the client gave it, ``shown``) that the system refused to look up."""
    code = getattr(exc, "errno", None)
    if code == errno.ENAMETOOLONG:
        return ServiceError(400, f"path {_shown(shown)}: a name in it is too long (at most 255 bytes each)")
    if code == errno.ELOOP or isinstance(exc, RuntimeError):
        return ServiceError(400, f"path {_shown(shown)}: too many levels of symbolic links")
    if code in (errno.EACCES, errno.EPERM):
        return ServiceError(403, f"path {_shown(shown)}: permission denied")
    if code in (errno.ENOENT, errno.ENOTDIR):
        return ServiceError(404, f"path {_shown(shown)}: no such file or folder")
    reason = os.strerror(code) if code is not None else type(exc).__name__
    return ServiceError(400, f"path {_shown(shown)}: cannot be read ({reason})")


def strip_folders(message: str, folders: Iterable[Path]) -> str:
    """``message`` with the server's ``folders`` cut out, as given and resolved: a path inside one becomes relative
    to it, the folder itself its name. The filesystem root is left alone (everything lies inside it).

    >>> strip_folders("/srv/data/a/b.png: no such file; /srv/data: empty", [Path("/srv/data")])
    'a/b.png: no such file; data: empty'
    """
    spellings = set()
    for folder in folders:
        for spelling in (Path(folder), Path(folder).resolve()):
            if spelling.name:  # not "/" (nor a bare drive)
                spellings.add(str(spelling))
    for text in sorted(spellings, key=len, reverse=True):  # a folder inside another first
        message = message.replace(text + os.sep, "")
        message = re.sub(re.escape(text) + r"(?![\w.-])", Path(text).name, message)
    return message


def _shown(path: str, limit: int = 80) -> str:
    """A client's path for an error message: quoted, and cut short when long."""
    return repr(path if len(path) <= limit else path[:limit] + "...")


def is_inside(path: Path, root: Path) -> bool:
    """True if the resolved ``path`` is ``root`` or below it."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def sanitize_filename(name: Optional[str], default: str = "file") -> str:
    """A plain file name from a client's one: no folders, only ``[A-Za-z0-9._-]``, no leading dot, bounded length.

    >>> sanitize_filename("../../etc/pass wd.PNG")
    'pass_wd.PNG'
    """
    name = unicodedata.normalize("NFKC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("_", name).lstrip(".")
    name = re.sub(r"\.{2,}", ".", name)
    if len(name) > _MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: _MAX_NAME - len(suffix) - 1] + dot + suffix) if dot and len(suffix) <= 10 else name[:_MAX_NAME]
    return name if name.strip("._-") else default


def token_matches(expected: Optional[str], authorization: Optional[str], header_token: Optional[str]) -> bool:
    """True when no token is configured, or when ``Authorization: Bearer <t>`` or ``X-Token`` carries it."""
    if not expected:
        return True
    given = header_token
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def token_source(
    expected: str,
    authorization: Optional[str],
    header_token: Optional[str],
    query_token: Optional[str] = None,
    cookie_token: Optional[str] = None,
) -> Optional[str]:
    """Where a request carries the ``expected`` token: "header" (``Authorization: Bearer`` or ``X-Token``),
    "query" (``?token=``, a link opened in a browser) or "cookie" (set by the answer to that link); None when
    it carries no right one. Browser pages (the gallery, the API docs) take all three; APIs the headers only."""
    if token_matches(expected, authorization, header_token):
        return "header"
    for source, value in (("query", query_token), ("cookie", cookie_token)):
        if value and hmac.compare_digest(value.encode(), expected.encode()):
            return source
    return None


def request_token_source(request: Any, expected: str, cookie: str) -> Optional[str]:
    """:func:`token_source` of a Starlette request: its ``Authorization`` / ``X-Token`` headers, ``?token=`` and
    the ``cookie`` of that name (the browser pages' way: the gallery, the API docs, the dashboard)."""
    headers = request.headers
    return token_source(
        expected,
        headers.get("authorization"),
        headers.get("x-token"),
        request.query_params.get("token"),
        request.cookies.get(cookie),
    )


def upload_kind(filename: str, content_type: Optional[str]) -> str:
    """ "image" or "video" from an upload's suffix, which its declared content type must agree with.

    Raises:
        ServiceError: 415 for an unknown suffix or a content type that is neither the suffix's kind nor generic.
    """
    suffix = Path(filename).suffix.lower()
    kind = "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None
    if kind is None:
        allowed = ", ".join(sorted(IMAGE_SUFFIXES.union(VIDEO_SUFFIXES)))
        raise ServiceError(415, f"{filename}: unsupported file type; upload one of {allowed}")
    declared = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if declared != "application/octet-stream" and not declared.startswith(kind + "/"):
        raise ServiceError(415, f"{filename}: content type {declared} does not match a {kind} file")
    return kind


def validate_decodes(path: Path, kind: str, shown_name: str, max_pixels: Optional[int] = None) -> None:
    """Decodes the file (a whole image, or a video's first frame) and refuses it if that fails.

    An image's size is read from its header first, so that a small file declaring a huge image (a decompression
    bomb) is refused before any pixel is decoded.

    Raises:
        ServiceError: 415 naming the upload and the decoder's reason; 413 for more than ``max_pixels`` pixels.
    """
    try:
        if kind == "image":
            from anydepth.io.images import read_image

            check_image_header(path, max_pixels, shown_name)
            read_image(path)
        else:
            from anydepth.io.video import VideoReader

            with VideoReader(path, max_frames=1) as video:
                _check_pixels((video.width, video.height), max_pixels, shown_name)
                next(iter(video), None)
    except ServiceError:
        raise
    except AnyDepthError as exc:
        reason = str(exc).replace(str(path), shown_name)
        raise ServiceError(415, f"{shown_name}: not a readable {kind} ({reason})") from None
    except Exception as exc:  # decoders raise all sorts of errors on hostile data
        raise ServiceError(415, f"{shown_name}: not a readable {kind} ({type(exc).__name__})") from None


def _header_size(path: Path, shown_name: str) -> Optional[Tuple[int, int]]:
    """(width, height) from the image header without decoding pixels; None when PIL cannot tell.

    Raises:
        ServiceError: 413 when the header declares more pixels than PIL opens at all (its decompression-bomb
            error): such an image could never be decoded, whatever this server's own limit.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Image.DecompressionBombError:
        raise ServiceError(
            413, f"{shown_name}: its header declares more than {decodable_pixels()} pixels, more than can be decoded"
        ) from None
    except Exception:  # not for PIL to say (HEIC without its plugin, float TIFF): the full decode decides
        return None


def decodable_pixels() -> int:
    """The most pixels an image may have and still be decoded here: anydepth's reader limit, and PIL's
    decompression-bomb limit (the size at which it refuses to open a file) when one is set."""
    from PIL import Image

    from anydepth.io.images import MAX_PIXELS

    bomb = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, 2 * bomb) if bomb else MAX_PIXELS


def check_image_header(path: Path, max_pixels: Optional[int], shown_name: str) -> None:
    """Refuses (413) an image whose header declares more than ``max_pixels`` pixels, or more than can be decoded
    (:func:`decodable_pixels`); decodes nothing."""
    _check_pixels(_header_size(path, shown_name), _image_limit(max_pixels), shown_name)


def _image_limit(max_pixels: Optional[int]) -> int:
    return decodable_pixels() if max_pixels is None else min(max_pixels, decodable_pixels())


def _check_pixels(size: Optional[Tuple[int, int]], max_pixels: Optional[int], shown_name: str) -> None:
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ServiceError(413, f"{shown_name}: {size[0]}x{size[1]} pixels is over this server's {max_pixels} limit")


def check_confined_inputs(paths: Iterable[Path], roots: Sequence[Path]) -> None:
    """Every path (after symlinks) must lie inside one of the roots; folder listings and .txt lists included."""
    resolved_roots = [Path(r).resolve() for r in roots]
    for p in paths:
        real = resolve_user_path(Path(p), Path(p).name)
        if not any(is_inside(real, r) for r in resolved_roots):
            raise ServiceError(403, f"input {Path(p).name!r} lies outside the allowed roots")


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
