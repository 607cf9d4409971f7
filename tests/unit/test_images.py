"""Hostile uploads: only real JPEG/PNG/WebP pixels get through, re-encoded, without metadata,
under a name the server made up."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.exceptions import NotFound

import config as settings
from shop import create_app, image_store, images
from shop.errors import InvalidInput
from shop.extensions import db
from shop.models import ImageBlob
from tests.support.console import image_bytes

NAME = re.compile(r"[a-f0-9]{64}\.(jpg|png|webp)")
GPS_IFD = 0x8825


@pytest.fixture
def shop_app(tmp_path):
    config = settings.TestingConfig()
    config.SQLALCHEMY_DATABASE_URI = "sqlite://"
    config.SHOP_UPLOAD_DIR = str(tmp_path / "uploads")
    app = create_app(config)
    with app.test_request_context():
        db.create_all()
        yield app


def _stored(stored: images.StoredImage) -> bytes:
    found = image_store.read(stored.digest)
    assert found is not None
    return found.data


def _nothing_stored() -> bool:
    return db.session.scalar(select(func.count()).select_from(ImageBlob)) == 0


def _with_gps(fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make
    exif[0x0112] = 6  # rotated: the stored picture must come out upright
    exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    return image_bytes(fmt, (80, 40), exif=exif.tobytes())


@pytest.mark.parametrize(("fmt", "extension"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_a_real_image_is_re_encoded_under_a_server_made_name(shop_app, fmt, extension):
    stored = images.store(image_bytes(fmt))

    assert NAME.fullmatch(stored.filename) and stored.filename.endswith(f".{extension}")
    assert stored.content_type == f"image/{'jpeg' if fmt == 'JPEG' else extension}"
    data = _stored(stored)
    assert stored.filename == f"{hashlib.sha256(data).hexdigest()}.{extension}"
    with Image.open(io.BytesIO(data)) as saved:
        assert saved.format == fmt and saved.size == (64, 48)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_location_and_camera_metadata_are_stripped_and_the_picture_stays_upright(shop_app, fmt):
    original = _with_gps(fmt)
    with Image.open(io.BytesIO(original)) as before:
        assert before.getexif().get_ifd(GPS_IFD)  # the upload really carries a location

    stored = images.store(original)

    data = _stored(stored)
    with Image.open(io.BytesIO(data)) as saved:
        assert dict(saved.getexif()) == {}
        assert "exif" not in saved.info and "xmp" not in saved.info
        assert saved.size == (40, 80)  # EXIF said "rotate", so the pixels were rotated
    assert b"PhoneMaker" not in data and b"Exif" not in data


def test_an_iphone_style_multi_picture_jpeg_is_accepted_as_a_jpeg(shop_app):
    out = io.BytesIO()
    first, second = Image.new("RGB", (30, 20), "red"), Image.new("RGB", (30, 20), "blue")
    first.save(out, "MPO", save_all=True, append_images=[second])

    stored = images.store(out.getvalue())

    assert stored.filename.endswith(".jpg") and stored.content_type == "image/jpeg"
    with Image.open(io.BytesIO(_stored(stored))) as saved:
        assert saved.format == "JPEG"


def test_a_jpeg_with_html_and_script_appended_is_stored_without_them(shop_app):
    payload = b"<html><body><script>alert(document.cookie)</script></body></html>"
    polyglot = image_bytes("JPEG") + payload

    stored = images.store(polyglot)

    data = _stored(stored)
    assert b"<script" not in data and b"<html" not in data and b"alert" not in data
    with Image.open(io.BytesIO(data)) as saved:
        saved.load()
        assert saved.format == "JPEG"


def test_html_in_a_jpeg_comment_does_not_survive_either(shop_app):
    stored = images.store(image_bytes("JPEG", comment=b"<script>alert(1)</script>"))

    assert b"<script" not in _stored(stored)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<html><script>alert(1)</script></html>", "isn't an image we can read"),
        (SVG, "isn't an image we can read"),
        (b"%PDF-1.4\n1 0 obj\n", "isn't an image we can read"),
        (b"", "Choose an image file"),
        (image_bytes("GIF"), "Upload a JPEG, PNG or WebP"),
        (image_bytes("BMP"), "Upload a JPEG, PNG or WebP"),
        (image_bytes("TIFF"), "Upload a JPEG, PNG or WebP"),
        (image_bytes("JPEG")[:200], "isn't an image we can read"),  # truncated
        (image_bytes("PNG")[:-20], "isn't an image we can read"),  # chunks cut off
    ],
    ids=["html", "svg", "pdf", "empty", "gif", "bmp", "tiff", "truncated-jpeg", "broken-png"],
)
def test_anything_that_is_not_a_whole_jpeg_png_or_webp_is_refused(shop_app, data, message):
    with pytest.raises(InvalidInput, match=message):
        images.store(data)

    assert _nothing_stored()


def test_an_oversized_file_is_refused_before_it_is_decoded(shop_app):
    with pytest.raises(InvalidInput, match="at most 8 MB"):
        images.store(image_bytes("JPEG") + b"\0" * images.MAX_BYTES)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` by ``height`` pixels: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "size", [(8000, 8000), (50_000, 50_000), (1, 60_000_000)], ids=["64mp", "2.5gp", "tall"]
)
def test_a_pixel_bomb_is_refused_without_being_decoded(shop_app, size):
    bomb = _png_header_only(*size)
    assert len(bomb) < 2000

    with pytest.raises(InvalidInput, match="too many pixels"):
        images.store(bomb)


def test_a_png_that_would_decode_past_the_memory_limit_is_refused_from_its_header(shop_app):
    bomb = _png_header_only(6000, 5000)  # 30 megapixels: under the pixel cap, 120 MB decoded

    with pytest.raises(InvalidInput, match="too large to process"):
        images.store(bomb)

    assert _nothing_stored()


def test_a_progressive_jpeg_counts_its_full_size_coefficients(shop_app):
    # libjpeg keeps a progressive JPEG's coefficients for the whole picture, reduced or not.
    big = io.BytesIO()
    Image.new("RGB", (7000, 5700), "white").save(big, "JPEG", progressive=True)

    with pytest.raises(InvalidInput, match="too large to process"):
        images.store(big.getvalue())


ROOT = Path(__file__).resolve().parents[2]
PEAK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import config as settings
    from shop import create_app, images
    from shop.extensions import db
    from tests.support.console import image_bytes

    def peak():  # this process's own high-water mark (ru_maxrss counts the forking parent's)
        status = Path("/proc/self/status").read_text()
        return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])

    data = Path(sys.argv[1]).read_bytes()
    config = settings.TestingConfig()
    config.SQLALCHEMY_DATABASE_URI = "sqlite://"
    config.SHOP_UPLOAD_DIR = sys.argv[2]
    with create_app(config).test_request_context():
        db.create_all()
        images.store(image_bytes("JPEG"))  # codecs loaded before measuring
        before = peak()
        stored = images.store(data)
        after = peak()
    print(stored.width, stored.height, (after - before) * 1024)
    """
)


def _peak_memory_of_storing(path: Path, upload_dir: Path) -> tuple[int, int, int]:
    """Store ``path`` in a fresh process; the stored size and how far its peak RSS grew."""
    done = subprocess.run(  # nosec B603 - our interpreter, our script
        [sys.executable, "-c", PEAK, str(path), str(upload_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    width, height, grown = (int(n) for n in done.stdout.split())
    return width, height, grown


MiB = 1024 * 1024


def test_a_forty_megapixel_jpeg_is_decoded_reduced_in_a_fraction_of_its_size(tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (7000, 5700), (180, 120, 60)).save(photo, "JPEG")  # 160 MB decoded whole

    width, height, grown = _peak_memory_of_storing(photo, tmp_path / "uploads")

    assert (width, height) == (images.MAX_SIDE, 1954)
    assert grown < 128 * MiB  # decoded at half size; whole, and copied, it took ~370 MiB


def test_a_png_at_the_decode_limit_costs_about_the_limit_and_no_copies(tmp_path):
    picture = tmp_path / "picture.png"
    Image.new("RGB", (5000, 4800), (180, 120, 60)).save(picture, "PNG")  # 96 MB decoded

    width, height, grown = _peak_memory_of_storing(picture, tmp_path / "uploads")

    assert (width, height) == (images.MAX_SIDE, 2304)
    assert grown < images.MAX_DECODED_BYTES + 96 * MiB  # copied before scaling: ~250 MiB


def test_a_large_picture_is_scaled_down(shop_app):
    stored = images.store(image_bytes("JPEG", (4000, 1000)))

    assert (stored.width, stored.height) == (images.MAX_SIDE, 600)


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "/etc/passwd",
        "0123456789abcdef0123456789abcdef.svg",
        "0123456789abcdef0123456789abcdef.jpg/../x",
        "0123456789ABCDEF0123456789ABCDEF.jpg",
        "x.jpg",
    ],
)
def test_only_server_made_names_are_ever_served(shop_app, tmp_path, name):
    (tmp_path / "passwd").write_text("secret")

    with pytest.raises(NotFound):
        images.send(name)


@pytest.mark.parametrize(("fmt", "mimetype"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_a_stored_image_is_served_with_its_own_type_and_no_sniffing_room(shop_app, fmt, mimetype):
    stored = images.store(image_bytes(fmt))

    response = images.send(stored.filename)
    response.close()

    assert response.mimetype == mimetype
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "immutable" in response.headers["Cache-Control"]


def test_a_stored_name_with_another_formats_extension_is_not_served(shop_app):
    stored = images.store(image_bytes("PNG"))

    with pytest.raises(NotFound):
        images.send(f"{stored.digest}.jpg")


def test_the_same_picture_uploaded_twice_is_stored_once(shop_app):
    first = images.store(image_bytes("PNG"))
    second = images.store(image_bytes("PNG"))

    assert first == second
    assert db.session.scalar(select(func.count()).select_from(ImageBlob)) == 1
