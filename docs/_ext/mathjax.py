"""MkDocs hook: bundle MathJax into the built site, so its formulas render with no network.

The pages load ``js/mathjax/tex-mml-chtml.js`` from the site itself. At build time this hook takes
the pinned MathJax release from the npm registry with ``npm pack`` (once: the package is checked
against its pinned digest and kept in ``~/.cache/pixyz_like/``, or ``$PIXYZ_LIKE_ENV_CACHE``) and
adds to the site the files the pages need: the TeX-to-HTML bundle, its fonts, the TeX extensions it
loads on demand, its menu, and MathJax's licence.

``PIXYZ_LIKE_MATHJAX`` overrides the source: a folder holding an unpacked ``mathjax`` npm package
(or its ``es5/`` folder), a ``mathjax-*.tgz`` from ``npm pack``, or ``cdn`` to link the CDN copy
instead (the site then needs the network to show formulas). Without npm, or offline on the first
build, the build stops with an error saying so, rather than producing a site whose formulas stay raw.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

__all__ = ["MATHJAX_VERSION", "SITE_FOLDER", "on_config", "on_files", "mathjax_es5"]

MATHJAX_VERSION = "3.2.2"
# The npm registry's integrity string for mathjax-3.2.2.tgz (what `npm pack --json` reports).
_INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
_CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{MATHJAX_VERSION}/es5/tex-mml-chtml.js"
SITE_FOLDER = "js/mathjax"
_SCRIPT = "tex-mml-chtml.js"
# What the pages use, relative to es5/: the bundle; the fonts, TeX extensions (\boldsymbol, \cancel...)
# and menu parts it loads from its own folder on demand.
_PARTS = (_SCRIPT, "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui")


def _cache_dir() -> Path:
    base = os.environ.get("PIXYZ_LIKE_ENV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pixyz_like")
    return Path(base) / f"mathjax-{MATHJAX_VERSION}"


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _unpack(tgz: Path, dest: Path) -> Path:
    """Unpack an npm tarball (its files are under ``package/``) into ``dest``; return ``dest/es5``."""
    if _integrity(tgz) != _INTEGRITY:
        raise PluginError(f"MathJax: {tgz} is not mathjax {MATHJAX_VERSION} as published (its sha512 differs)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        if dest.exists():  # another build got there first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp / "package", dest)
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest / "es5"


def _npm_pack(dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"MathJax {MATHJAX_VERSION} is bundled into the site so formulas render offline, and it is taken "
            "from the npm registry with `npm pack`, but npm is not installed. Install Node.js/npm, or set "
            "PIXYZ_LIKE_MATHJAX to an unpacked mathjax package (or its .tgz), or PIXYZ_LIKE_MATHJAX=cdn."
        )
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        tgz = Path(tmp) / f"mathjax-{MATHJAX_VERSION}.tgz"
        if proc.returncode != 0 or not tgz.is_file():
            raise PluginError(
                f"MathJax: `npm pack mathjax@{MATHJAX_VERSION}` failed (offline? it is needed once; the package "
                f"is then kept in {dest}): {proc.stderr.strip()[-500:]}. Or set PIXYZ_LIKE_MATHJAX to an "
                "unpacked mathjax package (or its .tgz), or PIXYZ_LIKE_MATHJAX=cdn."
            )
        return _unpack(tgz, dest)


def mathjax_es5(source: str | None = None) -> Path | None:
    """The ``es5/`` folder of MathJax to bundle, fetched and cached if needed; ``None`` for the CDN.

    ``source`` (default: ``$PIXYZ_LIKE_MATHJAX``): ``cdn``, a folder (a package or its ``es5/``), a
    ``.tgz``, or empty for the cached copy (fetched with npm on first use).
    """
    source = os.environ.get("PIXYZ_LIKE_MATHJAX", "") if source is None else source
    if source == "cdn":
        return None
    if source:
        path = Path(source).expanduser().resolve()
        if path.is_file():
            return _unpack(path, _cache_dir())
        for es5 in (path / "es5", path):
            if (es5 / _SCRIPT).is_file():
                return es5
        raise PluginError(f"PIXYZ_LIKE_MATHJAX={source}: no es5/{_SCRIPT} under {path}")
    cached = _cache_dir() / "es5"
    if (cached / _SCRIPT).is_file():
        return cached
    return _npm_pack(_cache_dir())


def on_config(config: Any) -> Any:
    """Load MathJax after its configuration (``js/mathjax-config.js``), from the site or the CDN."""
    es5 = mathjax_es5()
    config["extra_javascript"].append(_CDN if es5 is None else f"{SITE_FOLDER}/{_SCRIPT}")
    config["_pixyz_like_mathjax"] = es5
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the bundled MathJax files (and its licence) to the site."""
    es5 = config.get("_pixyz_like_mathjax")
    if es5 is None:
        return files
    sources = [(es5.parent / "LICENSE", "LICENSE")]
    for part in _PARTS:
        path = es5 / part
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        if not found:
            raise PluginError(f"MathJax: {path} is missing from the package")
        sources += [(p, p.relative_to(es5).as_posix()) for p in found]
    for path, rel in sources:
        files.append(File.generated(config, f"{SITE_FOLDER}/{rel}", abs_src_path=str(path)))
    return files
