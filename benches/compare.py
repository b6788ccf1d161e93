#!/usr/bin/env python3
"""Side-by-side delta comparison on the benchmark corpus (issue #3): abdelta against the
pairwise delta tools and the chunk-reuse tools, on the same pairs, in one run.

For each pair and tool: bytes a device downloads (abdelta: what its plan reads, i.e. envelope,
manifest, signature and blobs; pairwise tools: the patch file; casync: the index plus the
chunks the seed lacks; zchunk: what zck_delta_size reports), generation time and peak RSS,
apply time and peak RSS, and whether the output equals the new image. Then a drifted-source
run: a few MiB of blocks of the old image rewritten, as a running system does.

  python3 benches/compare.py                      # all pairs, all tools, writes BENCHMARKS.md
  python3 benches/compare.py --pairs libcrypto    # one pair, print only
  python3 benches/compare.py --skip bsdiff,detools

Installs what it needs: peers from Debian (xdelta3 bsdiff zstd casync zchunk time) and PyPI
(hdiffpatch detools), the corpus (benches/corpus.py), abdelta in release mode.
"""

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = pathlib.Path(os.environ.get("ABDELTA_CORPUS", pathlib.Path.home() / ".cache/abdelta-corpus"))
ABDELTA = ROOT / "target/release/abdelta"
PAIRS = {
    "debian-512": ("old.img", "new.img", "Debian 12 security updates, 512 MiB ext4"),
    "station-1g": ("old.img", "new.img", "Debian updates + application release, 1 GiB ext4"),
    "libcrypto": ("old", "new", "libcrypto.so.3, two Debian releases (native binary)"),
    "numpy-so": ("old", "new", "numpy 1.26.3 → 1.26.4 _multiarray_umath .so (native binary)"),
}
TOOLS = ["abdelta", "hdiffpatch", "detools", "bsdiff", "xdelta3", "zstd", "casync", "zchunk"]
HDP = """
import sys, hdiffpatch
old = open(sys.argv[2], 'rb').read()
if sys.argv[1] == 'diff':
    new = open(sys.argv[3], 'rb').read()
    cfg = hdiffpatch.LzmaConfig(level=9, window=26)
    open(sys.argv[4], 'wb').write(hdiffpatch.diff(old, new, cfg, validate=False))
else:
    open(sys.argv[4], 'wb').write(hdiffpatch.apply(old, open(sys.argv[3], 'rb').read()))
"""


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def install():
    install_peers()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "abdelta-cli"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, str(ROOT / "benches/corpus.py")], check=True)


def install_peers():
    need = [t for t in ["xdelta3", "bsdiff", "zstd", "casync", "zck"] if not shutil.which(t)]
    if need or not os.path.exists("/usr/bin/time"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "xdelta3", "bsdiff", "zstd", "casync",
                        "zchunk", "time", "e2fsprogs"], check=True, stdout=subprocess.DEVNULL)
    try:
        import hdiffpatch  # noqa: F401
        import detools  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hdiffpatch", "detools"],
                       check=True)


TIMEOUT = 1800  # seconds per command: a peer that takes longer is reported as timed out


def timed(cmd, cwd=None, env=None):
    """Runs cmd under /usr/bin/time: (seconds, peak RSS bytes, stdout)."""
    fmt = "ABDTIME %e %M"
    try:
        p = subprocess.run(["/usr/bin/time", "-f", fmt, *cmd], cwd=cwd, env=env, text=True,
                           capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {TIMEOUT} s") from None
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr[-400:]}")
    line = [l for l in p.stderr.splitlines() if l.startswith("ABDTIME")][-1]
    _, secs, kib = line.split()
    return float(secs), int(kib) * 1024, p.stdout


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class Run:
    """One tool on one pair, in a scratch directory."""

    def __init__(self, tool, old, new, work):
        self.tool, self.old, self.new, self.work = tool, old, new, work
        self.out = work / "out.img"

    def gen(self):
        return getattr(self, "gen_" + self.tool)()

    def apply(self, old=None):
        self.out.unlink(missing_ok=True)
        return getattr(self, "apply_" + self.tool)(old or self.old)

    # abdelta: sign with a bench key; bytes are what `plan` says a device with OLD reads.
    def gen_abdelta(self):
        key = self.work / "bench"
        if not key.with_suffix(".key").exists():
            sh([str(ABDELTA), "keygen", "-o", str(key)])
        t = timed([str(ABDELTA), "diff", "--from", str(self.old), "--to", str(self.new), "--key",
                   str(key) + ".key", "--release-version", "2", "--compat", "bench",
                   "--created-at", "1700000000", "-o", str(self.work / "b.abd")])
        return t[0], t[1], self.plan_bytes(self.old)

    def plan_bytes(self, old):
        return self.plan(old)["download_bytes"]

    def plan(self, old):
        state = self.work / "state-plan"
        shutil.rmtree(state, ignore_errors=True)
        out = sh([str(ABDELTA), "plan", str(self.work / "b.abd"), "--source", str(old), "--pubkey",
                  str(self.work / "bench.pub"), "--state-dir", str(state), "--json"])
        return json.loads(out)

    def apply_abdelta(self, old):
        state = self.work / "state"
        shutil.rmtree(state, ignore_errors=True)
        secs, rss, out = timed([str(ABDELTA), "apply", str(self.work / "b.abd"), "--source", str(old),
                                "--target", str(self.out), "--pubkey", str(self.work / "bench.pub"),
                                "--state-dir", str(state), "--json"])
        self.anon = json.loads(out.splitlines()[-1]).get("peak_rss_anon_bytes")
        return secs, rss

    def gen_xdelta3(self):
        window = str(min(1 << 30, max(1 << 20, self.old.stat().st_size)))
        p = self.work / "p.vcdiff"
        s, r, _ = timed(["xdelta3", "-9", "-f", "-B", window, "-e", "-s", str(self.old), str(self.new), str(p)])
        return s, r, p.stat().st_size

    def apply_xdelta3(self, old):
        window = str(min(1 << 30, max(1 << 20, old.stat().st_size)))
        return timed(["xdelta3", "-f", "-B", window, "-d", "-s", str(old), str(self.work / "p.vcdiff"),
                      str(self.out)])[:2]

    def gen_zstd(self):
        p = self.work / "p.zst"
        s, r, _ = timed(["zstd", "-q", "-f", "-19", "--long=31", f"--patch-from={self.old}",
                         str(self.new), "-o", str(p)])
        return s, r, p.stat().st_size

    def apply_zstd(self, old):
        return timed(["zstd", "-q", "-f", "-d", "--long=31", "--memory=2048MB",
                      f"--patch-from={old}", str(self.work / "p.zst"), "-o", str(self.out)])[:2]

    def gen_bsdiff(self):
        p = self.work / "p.bsdiff"
        s, r, _ = timed(["bsdiff", str(self.old), str(self.new), str(p)])
        return s, r, p.stat().st_size

    def apply_bsdiff(self, old):
        return timed(["bspatch", str(old), str(self.out), str(self.work / "p.bsdiff")])[:2]

    def gen_hdiffpatch(self):
        p = self.work / "p.hdiff"
        s, r, _ = timed([sys.executable, "-c", HDP, "diff", str(self.old), str(self.new), str(p)])
        return s, r, p.stat().st_size

    def apply_hdiffpatch(self, old):
        return timed([sys.executable, "-c", HDP, "apply", str(old), str(self.work / "p.hdiff"),
                      str(self.out)])[:2]

    def gen_detools(self):
        p = self.work / "p.detools"
        s, r, _ = timed(["detools", "create_patch", "-c", "lzma", str(self.old), str(self.new), str(p)])
        return s, r, p.stat().st_size

    def apply_detools(self, old):
        return timed(["detools", "apply_patch", str(old), str(self.work / "p.detools"), str(self.out)])[:2]

    # casync: chunk store of NEW; a device with OLD as seed fetches the index and the chunks
    # the seed does not have (same chunker, so the seed's chunks are OLD's own store).
    def gen_casync(self):
        store, seed = self.work / "store", self.work / "seed-store"
        for d in (store, seed):
            shutil.rmtree(d, ignore_errors=True)
        s, r, _ = timed(["casync", "make", f"--store={store}", str(self.work / "new.caibx"), str(self.new)])
        sh(["casync", "make", f"--store={seed}", str(self.work / "old.caibx"), str(self.old)])
        have = {p.name for p in seed.rglob("*.cacnk")}
        need = sum(p.stat().st_size for p in store.rglob("*.cacnk") if p.name not in have)
        return s, r, need + (self.work / "new.caibx").stat().st_size

    def apply_casync(self, old):
        return timed(["casync", "extract", f"--store={self.work / 'store'}", f"--seed={old}",
                      str(self.work / "new.caibx"), str(self.out)])[:2]

    # zchunk: both images as zchunk files; zck_delta_size reports what a client holding the
    # old one downloads of the new one.
    def gen_zchunk(self):
        s, r, _ = timed(["zck", "-o", str(self.work / "new.zck"), str(self.new)])
        sh(["zck", "-o", str(self.work / "old.zck"), str(self.old)])
        report = sh(["zck_delta_size", str(self.work / "old.zck"), str(self.work / "new.zck")])
        # "Would need to download N of M bytes" (the line's wording varies by version).
        numbers = [int(w) for w in report.replace(",", " ").split() if w.isdigit()]
        return s, r, numbers[0]

    def apply_zchunk(self, old):
        # zchunk clients rebuild from an old .zck plus downloaded chunks (zckdl); locally,
        # decompressing the new .zck is the rebuild's cost.
        secs, rss, _ = timed(["sh", "-c", f"unzck -c {self.work / 'new.zck'} > {self.out}"])
        return secs, rss


def drift(old, dst, mib=4, seed=2026):
    """Copies OLD to DST with `mib` MiB of 4 KiB blocks rewritten at random places."""
    shutil.copyfile(old, dst)
    size = dst.stat().st_size
    rng = random.Random(seed)
    with open(dst, "r+b") as f:
        for _ in range(mib * 256):
            f.seek(rng.randrange(size // 4096) * 4096)
            f.write(rng.randbytes(4096))


def mib(n):
    return f"{n / 2**20:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--skip", default="", help="tools to leave out, comma-separated: TOOL for "
                    "every pair or PAIR:TOOL for one")
    ap.add_argument("--out", default=None, help="write the tables here (default: BENCHMARKS.md "
                    "when every pair runs, else print only)")
    ap.add_argument("--no-install", action="store_true")
    args = ap.parse_args()
    pairs = [p for p in args.pairs.split(",") if p]
    skip = set(filter(None, args.skip.split(",")))
    if not args.no_install:
        install()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="abdelta-compare-"))
    results = {}
    for pair in pairs:
        old_name, new_name, _ = PAIRS[pair]
        old, new = CORPUS / pair / old_name, CORPUS / pair / new_name
        want = digest(new)
        binary = not old_name.endswith(".img")
        for tool in TOOLS:
            if tool in skip or f"{pair}:{tool}" in skip or (binary and tool in ("casync", "zchunk")):
                results[(pair, tool)] = dict(error="not run: " + (
                    "chunk stores need an image" if binary and tool in ("casync", "zchunk")
                    else "skipped in this run (--skip)"))
                continue
            work = scratch / pair / tool
            work.mkdir(parents=True)
            run = Run(tool, old, new, work)
            print(f"{pair}: {tool} ...", flush=True)
            try:
                gs, gr, size = run.gen()
                as_, ar = run.apply()
                ok = digest(run.out) == want
                results[(pair, tool)] = dict(bytes=size, gen_s=gs, gen_rss=gr, apply_s=as_,
                                             apply_rss=ar, ok=ok, anon=getattr(run, "anon", None))
            except Exception as e:  # a peer that fails is reported, not fatal
                results[(pair, tool)] = dict(error=" ".join(str(e).split())[:200])
            print(f"  {results[(pair, tool)]}", flush=True)
            if tool != "abdelta":
                for f in work.iterdir():
                    if f.is_file() and f.name == "out.img":
                        f.unlink()
        # Drift: the old image after a running system rewrote 4 MiB of its blocks.
        if not binary and "drift" not in skip:
            drifted = scratch / pair / "drifted.img"
            drift(old, drifted)
            row = {}
            for tool in TOOLS:
                work = scratch / pair / tool
                res = results.get((pair, tool), {})
                if "error" in res or not work.exists():
                    continue
                run = Run(tool, old, new, work)
                try:
                    if tool == "abdelta":
                        clean = res["bytes"]
                        plan = run.plan(drifted)
                        got = plan["download_bytes"]
                        run.apply(drifted)
                        row[tool] = dict(bytes=got, extra=got - clean, ok=digest(run.out) == want,
                                         bound=clean + plan["fell_back_bytes"],
                                         fell_back=len(plan["fell_back_chunks"]))
                    elif tool in ("casync",):
                        run.apply(drifted)
                        row[tool] = dict(ok=digest(run.out) == want)
                    elif tool == "zchunk":
                        continue
                    else:
                        run.apply(drifted)
                        row[tool] = dict(ok=digest(run.out) == want)
                except Exception as e:
                    row[tool] = dict(ok=False, error=str(e)[:120])
                print(f"  drift {tool}: {row.get(tool)}", flush=True)
            results[(pair, "drift")] = row
            drifted.unlink()
        for d in (scratch / pair).iterdir():
            if d.is_dir() and d.name != "abdelta":
                shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    text = report(pairs, results)
    print(text)
    out = args.out or ("BENCHMARKS.md" if set(pairs) == set(PAIRS) else None)
    if out:
        # Hand-written notes below the tables ("## Notes" onwards) survive a rerun.
        old = (ROOT / out).read_text() if (ROOT / out).exists() else ""
        notes = old[old.find("\n## Notes"):] if "\n## Notes" in old else ""
        (ROOT / out).write_text(text + notes)
        print(f"wrote {out}")


def report(pairs, results):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        "# Delta benchmarks",
        "",
        f"One run of `{' '.join(['python3 benches/compare.py', *sys.argv[1:]])}`"
        + f" on {datetime.date.today()}: {os.cpu_count()} cores "
        f"({cpu}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB RAM, "
        f"{platform.system()} {platform.release()}. Corpus: `python3 benches/corpus.py` (real Debian 12 "
        "packages and PyPI wheels; versions in each pair's `versions.txt`).",
        "",
        "**Download** is what a device holding the old image fetches: for abdelta the plan's bytes "
        "(envelope, manifest, signature, blobs); for pairwise tools the patch; for casync the index "
        "plus the chunks its seed lacks; for zchunk what `zck_delta_size` reports. Times are wall "
        "clock, RSS is peak resident memory (`/usr/bin/time`), which for abdelta's apply includes "
        "the mapped source image's pages; its anonymous peak (buffers and heap) is given apart.",
        "",
    ]
    for pair in pairs:
        _, _, title = PAIRS[pair]
        rows = [(t, results[(pair, t)]) for t in TOOLS if (pair, t) in results]
        lines += [f"## {pair}: {title}", "",
                  "| tool | download (bytes) | vs abdelta | gen s | gen RSS MiB | apply s | apply RSS MiB | output |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        ours = results.get((pair, "abdelta"), {}).get("bytes")
        for tool, r in rows:
            if "error" in r:
                what = r["error"] if r["error"].startswith("not run") else f"failed: {r['error']}"
                lines.append(f"| {tool} | {what} | | | | | | |")
                continue
            ratio = f"{r['bytes'] / ours:.2f}×" if ours else ""
            extra = f" (anon {mib(r['anon'])})" if r.get("anon") else ""
            lines.append(f"| {tool} | {r['bytes']:,} | {ratio} | {r['gen_s']:.1f} | {mib(r['gen_rss'])} | "
                         f"{r['apply_s']:.2f} | {mib(r['apply_rss'])}{extra} | "
                         f"{'verified' if r['ok'] else 'WRONG'} |")
        pairwise = [r["bytes"] for t, r in rows
                    if t in ("hdiffpatch", "detools", "bsdiff", "xdelta3", "zstd") and "bytes" in r]
        if ours and pairwise:
            lines += ["", f"abdelta / smallest pairwise peer: **{ours / min(pairwise):.4f}**"]
        drift_row = results.get((pair, "drift"))
        if drift_row:
            a = drift_row.get("abdelta", {})
            lines += ["", "Drifted source (4 MiB of 4 KiB blocks of the old image rewritten at random): "
                      f"abdelta reads {a.get('bytes', 0):,} bytes ({a.get('extra', 0):+,} vs the clean "
                      f"source; {a.get('fell_back', 0)} chunks fell back to their literals; target "
                      f"≤ clean + those literals = {a.get('bound', 0):,}: "
                      f"{'met' if a.get('bytes', 1) <= a.get('bound', 0) else 'NOT met'}), output "
                      f"{'verified' if a.get('ok') else 'WRONG'}; "
                      + ", ".join(f"{t}: {'correct' if r.get('ok') else 'wrong output or error'}"
                                  for t, r in drift_row.items() if t != "abdelta") + "."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
