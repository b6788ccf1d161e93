#!/usr/bin/env python3
"""One bundle for the fleet (issue #15), measured on the release chains of benches/corpus.py
(r0, r1, r2: three consecutive releases, added after the generator was tuned).

For each chain, side by side in one run:
  - abdelta's single-base bundle r1 -> r2, and the fleet bundle with r0 as an extra base
    (`diff --from r1 --from r0 --to r2`): bundle size and generation time per added base;
  - what a device on r1 and a device on r0 download from each (its plan), and that the fleet
    bundle rebuilds r2 on both;
  - fresh pairwise patches for each device's pair (r1 -> r2, r0 -> r2): HDiffPatch (LZMA,
    level 9, 64 MiB window, as in compare.py), xdelta3 -9, zstd -19 --patch-from;
  - the ratio of abdelta's download to the smallest pairwise patch, per device;
  - a device on a release the bundle does not list (r0, with the single-base bundle r1 -> r2)
    against the chunk-reuse tools serving r2 from one artifact: casync (the index and the
    chunks r0's own chunking lacks) and zchunk (what zck_delta_size reports).

  python3 benches/fleet.py            # every chain; prints a Markdown table
  python3 benches/fleet.py arrow-chain

Installs what it needs, as compare.py does.
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare  # noqa: E402
from compare import ABDELTA, CORPUS, HDP, digest, sh, timed  # noqa: E402

CHAINS = {
    "arrow-chain": "libarrow.so.1500, pyarrow 15.0.0 / 15.0.1 / 15.0.2 (x86_64, 62 MB)",
    "numpy-arm64": "numpy 1.26.2 / 1.26.3 / 1.26.4 _multiarray_umath .so (aarch64, 4.6 MB)",
}


def install():
    compare.install_peers()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "abdelta-cli"], cwd=compare.ROOT,
                   check=True)
    subprocess.run([sys.executable, str(compare.ROOT / "benches/corpus.py"), "--chains"],
                   check=True)


def abdelta_bundle(work, froms, new, out):
    key = work / "bench"
    if not key.with_suffix(".key").exists():
        sh([str(ABDELTA), "keygen", "-o", str(key)])
    args = [a for f in froms for a in ("--from", str(f))]
    secs, rss, _ = timed([str(ABDELTA), "diff", *args, "--to", str(new), "--key", f"{key}.key",
                          "--release-version", "2", "--compat", "bench",
                          "--created-at", "1700000000", "-o", str(out)])
    return secs, rss, out.stat().st_size


def device(work, bundle, old, new):
    """(download bytes, rebuilt correctly) for a device holding `old`."""
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    plan = json.loads(sh([str(ABDELTA), "plan", str(bundle), "--source", str(old), "--pubkey",
                          str(work / "bench.pub"), "--state-dir", str(state), "--json"]))
    out = work / "out.img"
    out.unlink(missing_ok=True)
    shutil.rmtree(state, ignore_errors=True)
    sh([str(ABDELTA), "apply", str(bundle), "--source", str(old), "--target", str(out),
        "--pubkey", str(work / "bench.pub"), "--state-dir", str(state)])
    return plan["download_bytes"], digest(out) == digest(new)


def pairwise(work, old, new):
    """{tool: (patch bytes, seconds)} for fresh pairwise patches old -> new."""
    out = {}
    p = work / "p.hdiff"
    s, _, _ = timed([sys.executable, "-c", HDP, "diff", str(old), str(new), str(p)])
    out["HDiffPatch"] = (p.stat().st_size, s)
    p = work / "p.vcdiff"
    window = str(min(1 << 30, max(1 << 20, old.stat().st_size)))
    s, _, _ = timed(["xdelta3", "-9", "-f", "-B", window, "-e", "-s", str(old), str(new), str(p)])
    out["xdelta3"] = (p.stat().st_size, s)
    p = work / "p.zst"
    s, _, _ = timed(["zstd", "-q", "-f", "-19", "--long=31", f"--patch-from={old}", str(new),
                     "-o", str(p)])
    out["zstd"] = (p.stat().st_size, s)
    return out


def run_chain(name):
    d = CORPUS / name
    r0, r1, r2 = d / "r0", d / "r1", d / "r2"
    rows = []
    with tempfile.TemporaryDirectory(prefix="abdelta-fleet-") as tmp:
        work = pathlib.Path(tmp)
        single = work / "single.abd"
        fleet = work / "fleet.abd"
        g1 = abdelta_bundle(work, [r1], r2, single)
        g2 = abdelta_bundle(work, [r1, r0], r2, fleet)
        for held, label in [(r1, "r1 (one behind)"), (r0, "r0 (two behind)")]:
            alone, ok1 = device(work, single, held, r2)
            shared, ok2 = device(work, fleet, held, r2)
            peers = pairwise(work, held, r2)
            best = min(v[0] for v in peers.values())
            rows.append({
                "device": label, "single": alone, "fleet": shared, "ok": ok1 and ok2,
                "peers": peers, "ratio": shared / best,
            })
        # The unlisted device against the chunk-reuse tools, each one artifact for every device.
        unlisted = rows[1]["single"]
        reuse = compare.Run("casync", r0, r2, work).gen_casync()[2]
        zck = compare.Run("zchunk", r0, r2, work).gen_zchunk()[2]
    return {"single_gen": g1, "fleet_gen": g2, "rows": rows,
            "unlisted": (unlisted, reuse, zck)}


def main():
    names = sys.argv[1:] or list(CHAINS)
    install()
    print("| chain | device on | abdelta single-base bundle | abdelta fleet bundle | HDiffPatch | "
          "xdelta3 | zstd --patch-from | fleet / smallest peer |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    results = {}
    for name in names:
        res = run_chain(name)
        results[name] = res
        for row in res["rows"]:
            p = row["peers"]
            print(f"| {name} | {row['device']} | {row['single']:,} | {row['fleet']:,}"
                  f"{'' if row['ok'] else ' (WRONG OUTPUT)'} | {p['HDiffPatch'][0]:,} | "
                  f"{p['xdelta3'][0]:,} | {p['zstd'][0]:,} | {row['ratio']:.3f}× |")
    print()
    print("| chain | device on an unlisted release (r0): abdelta r1 → r2 bundle | casync | "
          "zchunk |")
    print("|---|--:|--:|--:|")
    for name, res in results.items():
        a, c, z = res["unlisted"]
        print(f"| {name} | {a:,} | {c:,} | {z:,} |")
    print()
    print("| chain | bundle, one base | bundle, two bases | generation, one base | "
          "generation, two bases | zstd --patch-from r1→r2 | peak RSS, two bases |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, res in results.items():
        (s1, _, b1), (s2, rss2, b2) = res["single_gen"], res["fleet_gen"]
        zstd_s = res["rows"][0]["peers"]["zstd"][1]
        print(f"| {name} | {b1:,} | {b2:,} | {s1:.1f} s | {s2:.1f} s | {zstd_s:.1f} s | "
              f"{rss2 / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
