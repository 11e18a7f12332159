"""The Teams app package: manifest.json plus two icons, zipped at the root.

Plain stdlib on purpose (no botbuilder, no Pillow): `unsilo manifest teams` must work on a
machine without the Teams SDK installed. The icons are drawn here by a tiny PNG writer
and checked in under `manifest/teams/`; `make_icons` redraws them.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from bot import verbs

# The top-level `manifest/` folder, installed as the `manifest` package's data (a wheel unpacks it as files).
MANIFEST_DIR: Path = Path(str(resources.files("manifest") / "teams"))
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
PACKAGE_FILES = ("manifest.json", "color.png", "outline.png")
ACCENT = (0x1D, 0x4F, 0x91)  # manifest.json accentColor, the Slack app's background_color

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZIP_DATE = (2026, 1, 1, 0, 0, 0)  # fixed, so the same inputs give the same zip

Pixel = tuple[int, int, int, int]


# --- PNG ---------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: Path, width: int, height: int, pixel: Callable[[int, int], Pixel]) -> None:
    """Write an 8-bit RGBA (colour type 6), non-interlaced PNG; `pixel(x, y)` gives (r, g, b, a)."""
    if width < 1 or height < 1:
        raise ValueError(f"PNG size must be positive, got {width}x{height}")
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type None
        for x in range(width):
            px = tuple(pixel(x, y))
            if len(px) != 4 or not all(isinstance(v, int) and 0 <= v <= 255 for v in px):
                raise ValueError(f"pixel must be four ints 0-255, got {px!r}")
            raw.extend(px)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    data = _PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(data)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    out, pos = [], len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"corrupt PNG chunk {kind!r}")
        out.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    if not out or out[0][0] != b"IHDR":
        raise ValueError("PNG does not start with IHDR")
    return out


def read_png(data: bytes) -> tuple[int, int, int, list[Pixel]]:
    """Decode an 8-bit non-interlaced RGB/RGBA PNG (filter types 0-4):
    (width, height, colour type, pixels as (r, g, b, a) row by row)."""
    chunks = _chunks(data)
    width, height, depth, color_type, _comp, _filter, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or color_type not in (2, 6) or interlace != 0:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {color_type}, interlace {interlace})")
    bpp = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise ValueError("PNG image data has the wrong length")
    pixels: list[Pixel] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                raise ValueError(f"bad PNG filter type {ftype}")
            line[i] = (line[i] + pred) & 0xFF
        pixels.extend(
            (line[x * bpp], line[x * bpp + 1], line[x * bpp + 2], line[x * bpp + 3] if bpp == 4 else 255) for x in range(width)
        )
        prev = line
    return width, height, color_type, pixels


def read_png_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, colour type) from a PNG's IHDR."""
    _kind, ihdr = _chunks(data)[0]
    width, height, _depth, color_type = struct.unpack(">IIBB", ihdr[:10])
    return width, height, color_type


def read_png_pixels(data: bytes) -> tuple[int, int, list[list[Pixel]]]:
    """(width, height, rows of (r, g, b, a)): `read_png` with the pixels split into rows."""
    width, height, _color_type, pixels = read_png(data)
    return width, height, [pixels[y * width : (y + 1) * width] for y in range(height)]


# --- the logo: a speech bubble with a "U" cut out of it ------------------------------


def _in_rounded_rect(x: float, y: float, x0: float, y0: float, x1: float, y1: float, r: float) -> bool:
    cx, cy = min(max(x, x0 + r), x1 - r), min(max(y, y0 + r), y1 - r)
    return x0 <= x <= x1 and y0 <= y <= y1 and (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _in_triangle(x: float, y: float, a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    def side(p: tuple[float, float], q: tuple[float, float]) -> float:
        return (x - q[0]) * (p[1] - q[1]) - (p[0] - q[0]) * (y - q[1])

    d1, d2, d3 = side(a, b), side(b, c), side(c, a)
    return not ((d1 < 0 or d2 < 0 or d3 < 0) and (d1 > 0 or d2 > 0 or d3 > 0))


def _in_u(x: float, y: float) -> bool:
    left, right, top, bend, stroke = 0.31, 0.69, 0.22, 0.44, 0.12
    radius = (right - left) / 2
    cx = (left + right) / 2
    if top <= y <= bend and (left <= x <= left + stroke or right - stroke <= x <= right):
        return True
    d2 = (x - cx) ** 2 + (y - bend) ** 2
    return y >= bend and (radius - stroke) ** 2 <= d2 <= radius**2


def logo(x: float, y: float) -> bool:
    """True where the logo is white, in unit coordinates (0-1, y down)."""
    bubble = _in_rounded_rect(x, y, 0.0, 0.0, 1.0, 0.78, 0.2) or _in_triangle(x, y, (0.18, 0.70), (0.46, 0.70), (0.12, 1.0))
    return bubble and not _in_u(x, y)


def _coverage(px: int, py: int, size: int, margin: float, samples: int, inside: Callable[[float, float], bool] = logo) -> float:
    """Share of pixel (px, py) that `inside` covers, drawn in a square `size` wide with `margin`."""
    span = size * (1 - 2 * margin)
    hits = 0
    for sy in range(samples):
        for sx in range(samples):
            ux = (px + (sx + 0.5) / samples - size * margin) / span
            uy = (py + (sy + 0.5) / samples - size * margin) / span
            hits += inside(ux, uy)
    return hits / (samples * samples)


def _tile(x: float, y: float) -> bool:
    return _in_rounded_rect(x, y, 0.0, 0.0, 1.0, 1.0, 0.2)


def make_icons(folder: Path) -> None:
    """Draw color.png (192x192: a #1D4F91 rounded square, transparent corners, white logo)
    and outline.png (32x32: the same logo in pure white on full transparency, no
    anti-aliasing: Teams wants only white and transparent there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def color(x: int, y: int) -> Pixel:
        tile = _coverage(x, y, 192, 0.0, 4, _tile)
        if not tile:
            return (0, 0, 0, 0)
        k = _coverage(x, y, 192, 0.2, 4)
        r, g, b = (round(c + (255 - c) * k) for c in ACCENT)
        return (r, g, b, round(255 * tile))

    def outline(x: int, y: int) -> Pixel:
        return (255, 255, 255, 255) if _coverage(x, y, 32, 0.0625, 4) >= 0.5 else (0, 0, 0, 0)

    write_png(folder / "color.png", 192, 192, color)
    write_png(folder / "outline.png", 32, 32, outline)


# --- the package -------------------------------------------------------------------


# The verb table's command menus, as the manifest's bot command lists.
_MENU_SCOPES: dict[verbs.Menu, list[str]] = {"channel": ["team", "groupChat"], "personal": ["personal"]}
MAX_MENU_COMMANDS = 10  # per command list (the manifest schema's maxItems)
MAX_MENU_DESCRIPTION = 128


def command_lists() -> list[dict[str, Any]]:
    """The bot's `commandLists`, from the verb table: what Teams offers when someone types `@Unsilo`."""
    lists = []
    for where, scopes in _MENU_SCOPES.items():
        entries = verbs.menu(where)
        if len(entries) > MAX_MENU_COMMANDS:
            raise ValueError(f"{len(entries)} commands in the {where} menu; Teams lists at most {MAX_MENU_COMMANDS}")
        commands = [{"title": e.title, "description": e.description[:MAX_MENU_DESCRIPTION]} for e in entries]
        lists.append({"scopes": scopes, "commands": commands})
    return lists


def with_commands(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of `manifest` whose bots list the verb table's commands."""
    out: dict[str, Any] = json.loads(json.dumps(manifest))
    for bot in out.get("bots", []):
        bot["commandLists"] = command_lists()
    return out


def load_manifest(folder: Path = MANIFEST_DIR) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def _check_app_id(app_id: str) -> str:
    app_id = (app_id or "").strip()
    if not _GUID.match(app_id):
        raise ValueError(
            f"{app_id!r} is not a Teams app id: expected a GUID like 8e6e1f7a-3b2c-4d5e-8f90-a1b2c3d4e5f6 "
            "(the Azure Bot's Microsoft App ID)"
        )
    if app_id == PLACEHOLDER_ID:
        raise ValueError(f"app id {app_id} is the manifest's placeholder: use the Azure Bot's Microsoft App ID")
    return app_id


def with_app_id(manifest: dict[str, Any], app_id: str, version: str | None = None) -> dict[str, Any]:
    """A copy of `manifest` with every occurrence of the placeholder id (`id`, the bot ids,
    `webApplicationInfo.id`) replaced by `app_id`, and the version set if given."""
    app_id = _check_app_id(app_id)
    out: dict[str, Any] = json.loads(json.dumps(manifest, ensure_ascii=False).replace(PLACEHOLDER_ID, app_id))
    if version is not None:
        if not _SEMVER.match(version):
            raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH (like 1.0.3)")
        out["version"] = version
    if PLACEHOLDER_ID in json.dumps(out):
        raise ValueError(f"manifest.json still holds the placeholder id {PLACEHOLDER_ID} after replacement")
    return out


def build_package(*, app_id: str, out: Path, version: str | None = None) -> Path:
    """Write the Teams app package (a zip with manifest.json, color.png, outline.png at its
    root) to `out`, with `app_id` as the app id and the bot id; return `out`."""
    manifest = with_app_id(with_commands(load_manifest(MANIFEST_DIR)), app_id, version)
    files = {
        "manifest.json": (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        "color.png": (MANIFEST_DIR / "color.png").read_bytes(),
        "outline.png": (MANIFEST_DIR / "outline.png").read_bytes(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".unsilo-teams-", suffix=".zip", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in PACKAGE_FILES:
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, files[name])
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
