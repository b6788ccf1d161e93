#!/usr/bin/env python3
"""Builds the delta-quality benchmark corpus from real software (issue #3).

Pairs (old -> new), written under the cache directory (default ~/.cache/abdelta-corpus,
override with ABDELTA_CORPUS; nothing is written into the repository):

  debian-512/   512 MiB ext4 root images made with `mkfs.ext4 -d` from trees of real Debian
                12 packages: release 1 takes each package at its bookworm point-release
                version, release 2 at the newest one in bookworm-updates/bookworm-security
                (the security updates), with a few packages added and one removed.
  station-1g/   1 GiB images: the same two Debian trees plus an application tree (Python
                wheels from PyPI at two releases each) under /opt/station: the >= 1 GiB pair
                for the memory checks, and the "application update" pair.
  libcrypto/    a native binary pair: libcrypto.so.3 from the two libssl3 releases.
  numpy-so/     a native binary pair: numpy 1.26.3 -> 1.26.4 _multiarray_umath .so.

Release chains (r0, r1, r2: three consecutive releases), added after the generator was tuned,
for the one-bundle-per-fleet measurement (a device one release behind) and pairs two releases
apart (`--chains` builds only these):

  arrow-chain/  libarrow.so.1500 from pyarrow 15.0.0, 15.0.1, 15.0.2 (x86_64, 62 MB: a large
                native library whose code moves between releases).
  numpy-arm64/  numpy 1.26.2, 1.26.3, 1.26.4 _multiarray_umath .so for aarch64 (stations
                often run ARM).

Deterministic where the mirrors allow: package versions are chosen by rule and recorded in
<pair>/versions.txt, file contents and times come from the packages, and mkfs runs with a fixed
UUID, hash seed and clock. The mirrors move (a new security update changes release 2), so each
pair records what it was built from. Needs root-free tools only: apt-get download, dpkg-deb,
mkfs.ext4 (e2fsprogs), pip.

  python3 benches/corpus.py            # build what is missing
  python3 benches/corpus.py --list     # print the pairs and their files
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

CACHE = pathlib.Path(os.environ.get("ABDELTA_CORPUS", pathlib.Path.home() / ".cache/abdelta-corpus"))

# What an EV charging station's root filesystem carries: init, networking, TLS, remote
# access, a web server for the local UI, Python for the charging application, tooling.
BASE = """
systemd systemd-sysv udev dbus iproute2 iputils-ping ifupdown isc-dhcp-client netbase
openssh-server openssl ca-certificates curl wget nginx-light python3 python3-minimal
libpython3.11-stdlib python3-serial python3-yaml python3-requests logrotate rsyslog cron
chrony e2fsprogs util-linux mount kmod procps less nano vim-tiny sudo tzdata bash coreutils
libc6 libc-bin libssl3 libcurl4 libsqlite3-0 zlib1g libzstd1 liblzma5 libgnutls30 libkrb5-3
krb5-locales libldap-2.5-0 libnghttp2-14 librtmp1 libssh2-1 libpam-systemd dmsetup
""".split()
ADDED = "jq sqlite3 mosquitto-clients can-utils".split()
REMOVED = ["nano"]

# The station application: wheels at two releases each (cp311, manylinux x86_64).
APP = {
    "A": ["numpy==1.26.3", "pandas==2.1.3", "pillow==10.1.0", "cryptography==41.0.5",
          "pyserial==3.5", "paho-mqtt==2.0.0", "pydantic-core==2.14.5", "pyyaml==6.0.1"],
    "B": ["numpy==1.26.4", "pandas==2.1.4", "pillow==10.2.0", "cryptography==41.0.7",
          "pyserial==3.5", "paho-mqtt==2.1.0", "pydantic-core==2.16.1", "pyyaml==6.0.1"],
}

FIXED_MKFS = [
    "-q", "-F", "-b", "4096", "-L", "rootfs", "-U", "5e1f1c2a-7d3b-4c55-9a10-0123456789ab",
    "-E", "hash_seed=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0,root_owner=0:0,"
          "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def resolve(names):
    """The names plus their Depends/PreDepends closure (no recommends), real packages only."""
    out = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
               "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + names)
    found = {line.strip() for line in out.splitlines() if line and not line.startswith(" ")}
    real = set()
    for name in found:
        if name.startswith("<"):
            continue
        if run(["apt-cache", "madison", name]).strip():
            real.add(name)
    return sorted(real)


def versions(name):
    """(point-release version, newest version) of a package."""
    rows = [r.split("|") for r in run(["apt-cache", "madison", name]).splitlines()]
    rows = [(v.strip(), src.strip()) for _, v, src in rows if "Packages" in src]
    point = [v for v, src in rows if " bookworm/main" in src]
    newest = rows[0][0]
    for v, _ in rows[1:]:
        if subprocess.run(["dpkg", "--compare-versions", v, "gt", newest]).returncode == 0:
            newest = v
    return (point[0] if point else newest), newest


def fetch_deb(name, version, debs):
    debs.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{version.replace(':', '%3a')}_"
    hits = list(debs.glob(stem + "*.deb"))
    if not hits:
        run(["apt-get", "download", f"{name}={version}"], cwd=debs)
        hits = list(debs.glob(stem + "*.deb"))
    return hits[0]


def debian_tree(release, tree, chosen, added, debs):
    """Unpacks release 1 or 2's packages into `tree`; returns (package, version) pairs."""
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    picked = []
    for name, (v1, v2) in sorted(chosen.items()):
        if release == 1 and name in added:
            continue
        if release == 2 and name in REMOVED:
            continue
        version = v1 if release == 1 else v2
        run(["dpkg-deb", "-x", str(fetch_deb(name, version, debs)), str(tree)])
        picked.append((name, version))
    return picked


def app_tree(side, tree, wheels):
    """Unpacks the application's wheels for release `side` under tree/opt/station."""
    wheels.mkdir(parents=True, exist_ok=True)
    site = tree / "opt/station/lib/python3.11/site-packages"
    site.mkdir(parents=True, exist_ok=True)
    for spec in APP[side]:
        name, version = spec.split("==")
        norm = name.replace("-", "_").lower()
        hits = [w for w in wheels.glob("*.whl")
                if w.name.lower().startswith(f"{norm}-{version}-")]
        if not hits:
            run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--python-version", "3.11",
                 "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "--platform", "manylinux_2_28_x86_64", "-d", str(wheels), spec])
            hits = [w for w in wheels.glob("*.whl")
                    if w.name.lower().startswith(f"{norm}-{version}-")]
        with zipfile.ZipFile(hits[0]) as z:
            z.extractall(site)
    # Zip extraction stamps the current time: pin it, as a build system would.
    for p in [site, *site.rglob("*")]:
        os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)


def mkfs(tree, image, mib):
    image.unlink(missing_ok=True)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
    subprocess.run(["mkfs.ext4", *FIXED_MKFS, "-d", str(tree), str(image), f"{mib}M"],
                   check=True, env=env)


def choose():
    """Every package of either release with its two versions, and those only release 2 has.
    Cached in the corpus directory: resolving asks apt about each package (minutes)."""
    cache = CACHE / "packages.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        return {k: tuple(v) for k, v in saved["chosen"].items()}, set(saved["added"])
    print("resolving the package set ...", flush=True)
    base = resolve(BASE)
    everything = resolve(BASE + ADDED)
    added = set(everything) - set(base)
    chosen = {name: versions(name) for name in everything}
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"chosen": chosen, "added": sorted(added)}, indent=1))
    return chosen, added


def build(force=False):
    debs = CACHE / "debs"
    wheels = CACHE / "wheels"
    work = CACHE / "trees"
    pairs = [("debian-512", 512, False), ("station-1g", 1024, True)]
    missing = [p for p in pairs if force or not (CACHE / p[0] / "new.img").exists()]
    binaries = force or not all((CACHE / p / "new").exists() for p in ("libcrypto", "numpy-so"))
    if not missing and not binaries:
        print(f"corpus complete in {CACHE}")
        return
    chosen, added = choose()
    changed = sorted(n for n, (a, b) in chosen.items() if a != b)
    print(f"{len(chosen)} packages, {len(changed)} updated between the releases, "
          f"{len(added)} added, {len(REMOVED)} removed", flush=True)
    trees = {}
    for release in (1, 2):
        tree = work / f"debian-{release}"
        trees[release] = (tree, debian_tree(release, tree, chosen, added, debs))
    for pair, mib, with_app in missing:
        out = CACHE / pair
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        for release, side, name in [(1, "A", "old.img"), (2, "B", "new.img")]:
            tree, picked = trees[release]
            if with_app:
                app = work / f"station-{release}"
                if app.exists():
                    shutil.rmtree(app)
                shutil.copytree(tree, app, symlinks=True)
                app_tree(side, app, wheels)
                tree = app
                lines += [f"{name}\tapp\t{spec}" for spec in APP[side]]
            mkfs(tree, out / name, mib)
            lines += [f"{name}\t{p}\t{v}" for p, v in picked]
        (out / "versions.txt").write_text("\n".join(lines) + "\n")
        print(f"built {out}", flush=True)
    # Native binary pairs.
    lib = CACHE / "libcrypto"
    lib.mkdir(parents=True, exist_ok=True)
    v1, v2 = chosen["libssl3"]
    for version, name in [(v1, "old"), (v2, "new")]:
        tmp = work / f"libssl3-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", str(fetch_deb("libssl3", version, debs)), str(tmp)])
        so = next(tmp.rglob("libcrypto.so.3"))
        shutil.copyfile(so, lib / name)
    (lib / "versions.txt").write_text(f"old\tlibssl3\t{v1}\nnew\tlibssl3\t{v2}\n")
    npy = CACHE / "numpy-so"
    npy.mkdir(parents=True, exist_ok=True)
    for side, name in [("A", "old"), ("B", "new")]:
        tmp = work / f"numpy-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        app_tree(side, tmp, wheels)
        so = next(tmp.rglob("_multiarray_umath.cpython-311-x86_64-linux-gnu.so"))
        shutil.copyfile(so, npy / name)
    (npy / "versions.txt").write_text("old\tnumpy\t1.26.3\nnew\tnumpy\t1.26.4\n")
    shutil.rmtree(work)
    print(f"corpus complete in {CACHE}")


# Release chains: (directory, package, versions r0 r1 r2, pip platforms, file inside the wheel).
CHAINS = [
    ("arrow-chain", "pyarrow", ["15.0.0", "15.0.1", "15.0.2"],
     ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"],
     "pyarrow/libarrow.so.1500"),
    ("numpy-arm64", "numpy", ["1.26.2", "1.26.3", "1.26.4"],
     ["manylinux2014_aarch64", "manylinux_2_17_aarch64"],
     "numpy/core/_multiarray_umath.cpython-311-aarch64-linux-gnu.so"),
]


def build_chains(force=False):
    """The release chains: r0, r1, r2 of one file each, from wheels on PyPI."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for name, package, versions_, platforms, member in CHAINS:
        out = CACHE / name
        if not force and (out / "r2").exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        for i, version in enumerate(versions_):
            tag = platforms[0].split("_", 1)[1]
            hits = [w for w in wheels.glob(f"{package}-{version}-*{tag}*.whl")]
            if not hits:
                plats = [a for p in platforms for a in ("--platform", p)]
                run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                     "--only-binary=:all:", "--python-version", "3.11", *plats,
                     "-d", str(wheels), f"{package}=={version}"])
                hits = [w for w in wheels.glob(f"{package}-{version}-*{tag}*.whl")]
            with zipfile.ZipFile(hits[0]) as z, open(out / f"r{i}", "wb") as f:
                f.write(z.read(member))
        (out / "versions.txt").write_text(
            "".join(f"r{i}\t{package}\t{v}\n" for i, v in enumerate(versions_)))
        print(f"built {out}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the pairs and exit")
    ap.add_argument("--force", action="store_true", help="rebuild even if complete")
    ap.add_argument("--chains", action="store_true", help="build only the release chains")
    args = ap.parse_args()
    if args.list:
        for p in sorted(CACHE.glob("*/new*")) + sorted(CACHE.glob("*/r2")):
            print(p.parent.name, p.parent)
        return
    build_chains(args.force)
    if not args.chains:
        build(args.force)


if __name__ == "__main__":
    main()
