"""The Teams app manifest and package: valid against the official v1.22 schema, right icons."""

from __future__ import annotations

import copy
import json
import struct
import zipfile
import zlib
from pathlib import Path

import jsonschema
import pytest

from adapters.teams.manifest import (
    MANIFEST_DIR,
    PLACEHOLDER_ID,
    build_package,
    make_icons,
    read_png,
    write_png,
)
from bot.textcommands import USAGE
from tests.conftest import reference_dir

APP_ID = "8e6e1f7a-3b2c-4d5e-8f90-a1b2c3d4e5f6"
ACCENT = (0x1D, 0x4F, 0x91, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)


def _validator() -> jsonschema.Draft4Validator:
    path = reference_dir() / "schemas" / "teams-manifest" / "MicrosoftTeams-v1.22.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _errors(manifest: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(manifest)]


def _manifest() -> dict:
    return json.loads((MANIFEST_DIR / "manifest.json").read_text(encoding="utf-8"))


def test_checked_in_manifest_is_valid() -> None:
    manifest = _manifest()
    assert _errors(manifest) == []
    assert manifest["manifestVersion"] == "1.22"
    assert manifest["$schema"].endswith("/v1.22/MicrosoftTeams.schema.json")
    assert manifest["id"] == manifest["bots"][0]["botId"] == manifest["composeExtensions"][0]["botId"] == PLACEHOLDER_ID
    assert manifest["authorization"]["permissions"]["resourceSpecific"] == [
        {"name": "ChannelMessage.Read.Group", "type": "Application"}
    ]


def test_validation_is_real() -> None:
    bogus = copy.deepcopy(_manifest())
    bogus["bogus"] = True
    assert len(_errors(bogus)) == 1
    long_name = copy.deepcopy(_manifest())
    long_name["name"]["short"] = "x" * 31
    assert len(_errors(long_name)) == 1
    too_many = copy.deepcopy(_manifest())
    too_many["bots"][0]["commandLists"][0]["commands"].append({"title": "mine", "description": "mine"})
    assert _errors(too_many)


def test_every_command_is_a_text_command() -> None:
    manifest = _manifest()
    lists = manifest["bots"][0]["commandLists"]
    titles = [cmd["title"] for cl in lists for cmd in cl["commands"]]
    assert titles and set(titles) <= set(USAGE)
    personal = next(cl for cl in lists if cl["scopes"] == ["personal"])
    assert not {"link", "unlink"} & {cmd["title"] for cmd in personal["commands"]}
    assert all(len(cl["commands"]) <= 10 for cl in lists)


def test_package(tmp_path: Path) -> None:
    out = build_package(app_id=APP_ID, out=tmp_path / "unsilo-teams.zip", version="1.2.3")
    assert out == tmp_path / "unsilo-teams.zip"
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read("color.png") == (MANIFEST_DIR / "color.png").read_bytes()
        assert zf.read("outline.png") == (MANIFEST_DIR / "outline.png").read_bytes()
    assert _errors(manifest) == []
    assert manifest["id"] == manifest["bots"][0]["botId"] == manifest["composeExtensions"][0]["botId"] == APP_ID
    assert PLACEHOLDER_ID not in json.dumps(manifest)
    assert manifest["version"] == "1.2.3"
    keep = build_package(app_id=APP_ID.upper(), out=tmp_path / "b.zip")
    with zipfile.ZipFile(keep) as zf:
        assert json.loads(zf.read("manifest.json"))["version"] == _manifest()["version"]


@pytest.mark.parametrize("bad", ["not-a-guid", "", PLACEHOLDER_ID + "0", "{" + APP_ID + "}", PLACEHOLDER_ID])
def test_package_rejects_a_bad_app_id(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a Teams app id: expected a GUID|placeholder"):
        build_package(app_id=bad, out=tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def _check_icons(folder: Path) -> None:
    w, h, color_type, pixels = read_png((folder / "color.png").read_bytes())
    assert (w, h, color_type) == (192, 192, 6)
    assert ACCENT in pixels and WHITE in pixels
    assert pixels[96 * 192 + 4] == ACCENT  # the square's edge, half way down
    w, h, color_type, pixels = read_png((folder / "outline.png").read_bytes())
    assert (w, h, color_type) == (32, 32, 6)
    assert set(pixels) == {WHITE, CLEAR}
    assert pixels[0] == CLEAR


def test_checked_in_icons() -> None:
    _check_icons(MANIFEST_DIR)


def test_make_icons_is_reproducible(tmp_path: Path) -> None:
    make_icons(tmp_path)
    _check_icons(tmp_path)
    for name in ("color.png", "outline.png"):
        assert (tmp_path / name).read_bytes() == (MANIFEST_DIR / name).read_bytes()


def test_png_round_trip(tmp_path: Path) -> None:
    write_png(tmp_path / "p.png", 3, 2, lambda x, y: (x * 80, y * 100, x + y, 255 - x))
    w, h, color_type, pixels = read_png((tmp_path / "p.png").read_bytes())
    assert (w, h, color_type) == (3, 2, 6)
    assert pixels == [(x * 80, y * 100, x + y, 255 - x) for y in range(2) for x in range(3)]


def _filtered_png(rows: list[list[tuple[int, int, int]]]) -> bytes:
    """An RGB PNG with row y using filter type y % 5 (to check read_png's unfiltering)."""
    bpp, prev, raw = 3, None, bytearray()
    for y, row in enumerate(rows):
        line = bytes(v for px in row for v in px)
        up = prev or bytes(len(line))
        ftype, out = y % 5, bytearray()
        for i, v in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b, c = up[i], (up[i - bpp] if i >= bpp else 0)
            if ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                pred = [0, a, b, (a + b) // 2][ftype]
            out.append((v - pred) & 0xFF)
        raw += bytes([ftype]) + out
        prev = line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def test_read_png_unfilters_every_filter_type() -> None:
    rows = [[((x * 37 + y * 91) % 256, (x * y * 13) % 256, (200 - x * 7 + y) % 256) for x in range(6)] for y in range(10)]
    w, h, color_type, pixels = read_png(_filtered_png(rows))
    assert (w, h, color_type) == (6, 10, 2)
    assert pixels == [(*px, 255) for row in rows for px in row]
