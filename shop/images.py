"""Uploaded images: only JPEG, PNG or WebP that Pillow decodes, within size and pixel caps,
re-encoded without metadata (no GPS) and stored where every app host reads them
(shop/image_store.py), under a name made of the SHA-256 of the re-encoded bytes.

Memory is bounded before anything is decoded: a JPEG is decoded reduced (libjpeg scales by
1/2, 1/4 or 1/8 while decoding, ``Image.draft``) to no less than the stored size, and whatever
is left to decode — pixels, plus a progressive JPEG's coefficient buffer — must fit in
:data:`MAX_DECODED_BYTES`, or the upload is refused from its header. One image is decoded at a
time per process, so a worker's threads never hold several decodes at once.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from flask import Response, abort, current_app, request, send_from_directory
from PIL import Image, ImageOps, UnidentifiedImageError

from shop import image_store
from shop.errors import InvalidInput

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 2400
# What one decode may allocate: a 24-megapixel PNG (Pillow keeps RGB in 4 bytes a pixel), or
# any JPEG up to MAX_PIXELS once decoded reduced. The stored copy is at most MAX_SIDE square.
MAX_DECODED_BYTES = 96 * 1024 * 1024
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_DECODING = threading.BoundedSemaphore(1)
FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    # Phones write JPEGs with a second, embedded picture; Pillow calls them MPO. The first
    # frame is an ordinary JPEG and is all we keep.
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}
SAVE_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
CONTENT_TYPES = {ext: content_type for ext, content_type in FORMATS.values()}
# ``<sha256>.<ext>``; 32 hex digits are the random names uploads were given before.
_NAME = re.compile(r"(?:[a-f0-9]{64}|[a-f0-9]{32})\.(jpg|png|webp)")
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StoredImage:
    filename: str
    content_type: str
    width: int
    height: int
    digest: str


def upload_dir() -> Path:
    """Where uploads were kept as files before they moved into the store."""
    return Path(current_app.config["SHOP_UPLOAD_DIR"])


def store(data: bytes) -> StoredImage:
    """Validate, strip and store an upload in the caller's transaction; InvalidInput with a
    clear reason otherwise.

    Nothing of the uploaded file is kept but its decoded pixels: the client's file name,
    metadata (EXIF, GPS, comments, text chunks, ICC) and any bytes smuggled after the image
    data (a JPEG/HTML polyglot) are gone once it is re-encoded.
    """
    if not data:
        raise InvalidInput("Choose an image file to upload.")
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"Images can be at most {MAX_BYTES // (1024 * 1024)} MB.")
    with _DECODING:
        image = _decode(data)
        extension, content_type = FORMATS[image.format or ""]
        try:
            image = _pixels_only(image)
            out = io.BytesIO()
            # A fresh save writes pixels only: no EXIF, no GPS, no comments, no ICC text chunks.
            image.save(out, SAVE_FORMATS[extension], quality=86, optimize=True)
        except (OSError, ValueError, SyntaxError):
            raise InvalidInput(
                "That file isn't an image we can read (JPEG, PNG or WebP)."
            ) from None
    digest = image_store.put(out.getvalue(), content_type)
    return StoredImage(f"{digest}.{extension}", content_type, image.width, image.height, digest)


def _pixels_only(image: Image.Image) -> Image.Image:
    """Upright, at most MAX_SIDE on the long side, in a plain mode, with no metadata.

    Scaled down first, so the copies below are of the small picture (MAX_SIDE is a square
    box: turning the picture upright afterwards keeps it inside)."""
    extension = FORMATS[image.format or ""][0]
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert(
            "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        )
    if extension == "jpg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    return clean


def _decode(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            if probe.format not in FORMATS:
                raise InvalidInput("Upload a JPEG, PNG or WebP image.")
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise InvalidInput("That image has too many pixels.")
            probe.verify()
            image = Image.open(io.BytesIO(data))
            _reduce_while_decoding(image)
            if decoded_bytes(image, full_size=(width, height)) > MAX_DECODED_BYTES:
                raise InvalidInput(
                    "That image is too large to process. Save it at no more than "
                    f"{MAX_DECODED_BYTES // 4 // 1_000_000} megapixels and upload it again."
                )
            image.load()
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput("That image has too many pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput("That file isn't an image we can read (JPEG, PNG or WebP).") from None
    return image


def _reduce_while_decoding(image: Image.Image) -> None:
    """Ask a JPEG's decoder for the smallest scale (1, 1/2, 1/4, 1/8) that is still at least
    the size it will be stored at. Other formats decode at full size."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = image.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    image.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))


def decoded_bytes(image: Image.Image, *, full_size: tuple[int, int]) -> int:
    """What decoding ``image`` (opened, after any draft) allocates, read from its header: the
    pixels as Pillow holds them, plus a progressive JPEG's coefficient buffer, which libjpeg
    keeps for the whole ``full_size`` picture whatever the scale (2 bytes a sample)."""
    width, height = image.size
    total = width * height * _BYTES_PER_PIXEL.get(image.mode, 4)
    layers = getattr(image, "layer", None)
    if image.info.get("progressive") and layers:
        h_max = max(layer[1] for layer in layers) or 1
        v_max = max(layer[2] for layer in layers) or 1
        samples = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
        total += int(full_size[0] * full_size[1] * samples * 2)
    return total


def send(filename: str):
    """Serve a stored upload with its own content type, or 404 for any other name.

    The content behind a name never changes, so it is cached for a year and its ETag is its
    digest: a browser or proxy asking again with ``If-None-Match`` gets 304, for a
    ``<digest>.<ext>`` name without the store being read."""
    match = _NAME.fullmatch(filename)
    if match is None:
        abort(404)
    stem, extension = filename.split(".")
    digest = stem if len(stem) == 64 else image_store.digest_for_name(filename)
    if digest is None:
        return _send_file(filename)
    if request.if_none_match.contains(digest):
        return _cacheable(Response(status=304), digest)
    found = image_store.read(digest)
    if found is None or found.content_type != CONTENT_TYPES[extension]:
        abort(404)
    return _cacheable(Response(found.data, mimetype=found.content_type), digest)


def _cacheable(response: Response, digest: str) -> Response:
    response.set_etag(digest)
    response.headers["Cache-Control"] = CACHE_FOREVER
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _send_file(filename: str):
    """An upload from before the store that ``flask shop images migrate`` has not moved yet:
    served from this host's SHOP_UPLOAD_DIR while it is there."""
    directory = upload_dir()
    if not (directory / filename).is_file():
        abort(404)
    extension = filename.rsplit(".", 1)[1]
    response = send_from_directory(directory, filename, mimetype=CONTENT_TYPES[extension])
    response.headers["Cache-Control"] = CACHE_FOREVER
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
