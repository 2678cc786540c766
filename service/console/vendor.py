"""Fetch the console's third-party browser files from the npm registry (``make vendor``).

Each package of ``vendor.json`` is downloaded as its registry tarball, checked against the pinned
``integrity`` (the registry's SHA-512 of the tarball) before anything is unpacked, and only the listed
files are written, under ``var/vendor/NAME/``. A package already in place at its version is left alone.
Nothing is fetched at run time: the service serves what is on disk.

    python -m service.console.vendor [--into var/vendor]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

LOCK = Path(__file__).with_name("vendor.json")
REGISTRY = "https://registry.npmjs.org"


def tarball_url(name: str, version: str) -> str:
    return f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def fetch(package: dict, into: Path) -> bool:
    """Put one package's listed files under ``into/NAME``; return False when it was in place already."""
    folder = into / package["name"]
    stamp = folder / ".version"
    if stamp.is_file() and stamp.read_text().strip() == package["version"]:
        return False
    with urllib.request.urlopen(tarball_url(package["name"], package["version"]), timeout=120) as response:
        data = response.read()
    algorithm, _, expected = package["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != expected:
        raise SystemExit(f"{package['name']}@{package['version']}: the tarball does not match its integrity")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for relative in package["files"]:
            member = archive.extractfile(f"package/{relative}")
            if member is None:
                raise SystemExit(f"{package['name']}@{package['version']}: no file {relative} in the tarball")
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(member.read())
    stamp.write_text(package["version"] + "\n")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, default=Path("var/vendor"))
    args = parser.parse_args(argv)
    for package in json.loads(LOCK.read_text())["packages"]:
        fetched = fetch(package, args.into)
        print(f"{package['name']}@{package['version']}: {'fetched' if fetched else 'in place'}", file=sys.stderr)


if __name__ == "__main__":
    main()
