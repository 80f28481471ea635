#!/usr/bin/env python3
"""Two ccb binaries, the same figures, run alternately: launch overhead and reports.

Run through benches/compare, which builds both. Uses benches/bench.py's runners, so every figure
is measured the way BENCHMARKS.md's own tables are.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def spread(xs):
    return f"{min(xs) * 1000:.2f} to {max(xs) * 1000:.2f}"


def main():
    p = argparse.ArgumentParser()
    for k in ("base", "base-name", "current", "current-name", "fake", "gen", "work"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    n = 20 if a.quick else 50
    size = "64M" if a.quick else "250M"
    reps_cold, reps_warm = (3, 11) if a.quick else (7, 21)
    # bench.py's helpers read their settings from its ARGS.
    bench.ARGS = argparse.Namespace(fake=os.path.abspath(a.fake), gen=os.path.abspath(a.gen),
                                    work=os.path.abspath(a.work), seed=1, quick=a.quick)
    bins = {"base": os.path.abspath(a.base), "current": os.path.abspath(a.current)}
    names = {"base": a.base_name, "current": a.current_name}
    say = bench.say
    say(f"# ccb {names['current']} against {names['base']}")
    say()
    say(f"- Machine: {bench.machine()}")
    say(f"- When: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average at the start "
        f"{os.getloadavg()[0]:.2f}")
    say()
    figs = {}  # figure -> which -> [seconds]
    errors = []

    def add(fig, which, secs):
        figs.setdefault(fig, {"base": [], "current": []})[which].append(secs)

    # Launch: the fake child alone, then through each ccb, alternating. Each binary has a home
    # (and a ledger) of its own: an older ccb refuses a ledger a newer one migrated, and would
    # then be measured without its ledger writes.
    sessions = {w: bench.Session() for w in bins}
    envs = {w: sessions[w].with_(FAKE_SCRIPT="exit:0") for w in bins}
    for _ in range(n):
        for which in ("base", "current"):
            s, env = sessions[which], envs[which]
            d = bench.run_measured([bench.ARGS.fake, "-p", "hi"], env, cwd=s.work, timeout=30)[0]
            v, _, code, _, err, _ = bench.run_measured([bins[which], "-p", "hi"], env, cwd=s.work, timeout=30)
            if code != 0 or b"cannot record" in err:
                errors.append(f"{which} launch: exit {code}: {err[-200:]!r}")
            add("launch, pipe: added", which, v - d)
            d = bench.run_pty([bench.ARGS.fake], env, s.work, timeout=30)[0]
            v = bench.run_pty([bins[which]], env, s.work, timeout=30)[0]
            add("launch, PTY: added", which, v - d)
    for s in sessions.values():
        s.close()
    # Reports on one history: cold (a fresh ledger each run), then warm.
    hist, truth = bench.history(size)
    home = tempfile.mkdtemp(prefix="ccb-cmp-home-")
    datas = {w: tempfile.mkdtemp(prefix=f"ccb-cmp-{w}-") for w in bins}

    def report(which):
        bench.ARGS.ccb = bins[which]
        w, _, code, out, err, _ = bench.ccb_report(hist, datas[which], home)
        e = bench.check(f"{which} {size}", out, truth) if code == 0 else f"{which} exited {code}: {err[-200:]!r}"
        if e and e not in errors:
            errors.append(e)
        return w

    for _ in range(reps_cold):
        for which in bins:
            shutil.rmtree(datas[which], ignore_errors=True)
            os.makedirs(datas[which])
            add(f"report {size}, cold", which, report(which))
    for _ in range(reps_warm):
        for which in bins:
            add(f"report {size}, warm", which, report(which))
    shutil.rmtree(home, ignore_errors=True)
    for d in datas.values():
        shutil.rmtree(d, ignore_errors=True)

    say(f"| figure | {names['base']} (median) | min to max | {names['current']} (median) | min to max | difference |")
    say("|---|---|---|---|---|---|")
    for fig, r in figs.items():
        b, c = statistics.median(r["base"]), statistics.median(r["current"])
        say(f"| {fig} | {b * 1000:.2f} ms | {spread(r['base'])} | {c * 1000:.2f} ms | {spread(r['current'])} "
            f"| {(c - b) * 1000:+.2f} ms ({(c - b) / b * 100:+.0f}%) |")
    say()
    say(f"Launch: {n} runs of each, the child alone measured before each ccb run and subtracted. Reports: "
        f"`ccb usage daily --json` on the {size} generated history, {reps_cold} cold runs (a fresh ledger each) "
        f"and {reps_warm} warm, alternating base and current.")
    say("Correctness: " + ("; ".join(errors) if errors else "every report of both equals the generator's true cost."))
    say(f"_Load average at the end {os.getloadavg()[0]:.2f}._")
    with open(os.path.join(a.work, "compare.md"), "w") as f:
        f.write("\n".join(bench.OUT) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
