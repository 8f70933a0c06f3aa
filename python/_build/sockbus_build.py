"""A PEP 517 build backend for the sockbus package that needs nothing but
the standard library, so that `pip install ./python` works without a
package index (no setuptools or wheel to download).

It builds a pure-Python wheel (py3-none-any) of the `sockbus` package
with zipfile, an sdist with tarfile, and an editable wheel (PEP 660) that
puts this directory on sys.path with a .pth file. Metadata comes from the
[project] table of pyproject.toml, which this reads with a parser for the
few plain `key = "value"` lines it has (tomllib is Python 3.11+).
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "sockbus"


def _project():
    """The [project] table's string values, and requires-python."""
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if table is None:
        raise RuntimeError("pyproject.toml has no [project] table")
    values = dict(re.findall(r'^([A-Za-z-]+)\s*=\s*"([^"]*)"\s*$', table.group(1), re.M))
    for key in ("name", "version"):
        if key not in values:
            raise RuntimeError(f"pyproject.toml: [project] has no {key}")
    return values


def _metadata(p):
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
        "License: MIT",
        f"Requires-Python: {p.get('requires-python', '>=3.9')}",
        "Classifier: Programming Language :: Python :: 3",
        "Classifier: Operating System :: POSIX :: Linux",
    ]
    readme = os.path.join(HERE, p.get("readme", "README.md"))
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = "\n" + f.read()
    return "\n".join(lines) + "\n" + body


def _timestamp():
    """SOURCE_DATE_EPOCH when set (reproducible builds), else 1980-01-01."""
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    return max(epoch, 315532800)


def _package_files():
    """(path in the archive, path on disk) for every file of the package."""
    root = os.path.join(HERE, PACKAGE)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".py", ".typed")):
                full = os.path.join(dirpath, name)
                out.append((os.path.relpath(full, HERE).replace(os.sep, "/"), full))
    return out


def _dist_info(p):
    return f"{p['name']}-{p['version']}.dist-info"


def _wheel_name(p, tag="py3-none-any"):
    return f"{p['name']}-{p['version']}-{tag}.whl"


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _write_wheel(directory, p, contents):
    """contents: (archive path, bytes) pairs; the dist-info is added."""
    info = _dist_info(p)
    wheel = (f"Wheel-Version: 1.0\nGenerator: sockbus_build\nRoot-Is-Purelib: true\n"
             f"Tag: py3-none-any\n")
    contents = list(contents) + [
        (f"{info}/METADATA", _metadata(p).encode()),
        (f"{info}/WHEEL", wheel.encode()),
    ]
    record = [_record_line(path, data) for path, data in contents]
    record.append(f"{info}/RECORD,,")
    contents.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    name = _wheel_name(p)
    stamp = time.gmtime(_timestamp())[:6]
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in contents:
            zi = zipfile.ZipInfo(path, stamp)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return name


def _read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- PEP 517 hooks ----------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p = _project()
    info = os.path.join(metadata_directory, _dist_info(p))
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata(p))
    with open(os.path.join(info, "WHEEL"), "w", encoding="utf-8") as f:
        f.write("Wheel-Version: 1.0\nGenerator: sockbus_build\nRoot-Is-Purelib: true\n"
                "Tag: py3-none-any\n")
    return _dist_info(p)


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    return _write_wheel(wheel_directory, p, [(arc, _read(full)) for arc, full in _package_files()])


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    pth = (HERE + "\n").encode()
    return _write_wheel(wheel_directory, p, [(f"__editable__.{p['name']}.pth", pth)])


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = f"{p['name']}-{p['version']}"
    files = [("pyproject.toml", os.path.join(HERE, "pyproject.toml")),
             ("_build/sockbus_build.py", os.path.abspath(__file__))]
    readme = p.get("readme", "README.md")
    if os.path.exists(os.path.join(HERE, readme)):
        files.append((readme, os.path.join(HERE, readme)))
    files += _package_files()
    name = f"{base}.tar.gz"
    stamp = _timestamp()
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        def add(arc, data):
            ti = tarfile.TarInfo(f"{base}/{arc}")
            ti.size = len(data)
            ti.mtime = stamp
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
        for arc, full in files:
            add(arc, _read(full))
        add("PKG-INFO", _metadata(p).encode())
    return name
