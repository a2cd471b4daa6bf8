#!/usr/bin/env python3
"""Checks the `rust-version` declared by the published crates, on a machine with one toolchain.

No older compiler can be run here, so the declared version is checked three ways:

1. The edition needs it: edition 2024 needs Rust 1.85.
2. Every dependency in the resolved graph of the published crates (normal and build
   dependencies, all features, all platforms; `cargo metadata`) declares a
   `rust-version` no newer than ours. Those that declare none are listed.
3. Our code uses no newer standard library API: clippy's `incompatible_msrv` lint
   (denied in the workspace lints, run by CI's clippy step) compares every std item
   used against the declared version. This script proves the lint is live on this
   toolchain by running it on a canary that uses an API one version too new, and
   expects the canary to fail.

What none of this sees is language syntax stabilised after the declared version
(clippy checks library items, not syntax). The most likely one in edition 2024 code,
`let` chains (Rust 1.88), is searched for in the sources.
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
EDITION_NEEDS = {"2015": (1, 0), "2018": (1, 31), "2021": (1, 56), "2024": (1, 85)}
# An API stabilised one version after the key, for the canary.
CANARY = {
    (1, 85): "pub fn f(v: &mut Vec<u8>) -> Option<u8> { v.pop_if(|x| *x > 1) } // 1.86",
    (1, 86): "pub fn f(v: &mut Vec<u8>) -> usize { v.extract_if(.., |x| *x > 1).count() } // 1.87",
    (1, 87): "pub fn f(v: &[u8]) -> usize { v.as_chunks::<2>().0.len() } // 1.88",
}


def version(text):
    return tuple(int(x) for x in text.split("."))[:2] if text else None


def show(v):
    return ".".join(map(str, v))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    published = [i for i in members if packages[i]["publish"] != []]
    failures = []

    declared = {version(packages[i]["rust_version"]) for i in published}
    if None in declared or len(declared) != 1:
        sys.exit(f"every published crate declares one rust-version: {declared}")
    (msrv,) = declared
    print(f"declared rust-version: {show(msrv)} ({len(published)} published crates)")

    for i in published:
        need = EDITION_NEEDS[packages[i]["edition"]]
        if need > msrv:
            failures.append(f"{packages[i]['name']}: edition {packages[i]['edition']} needs {show(need)}")
    print(f"1. editions: {sorted({packages[i]['edition'] for i in published})}, need at most "
          f"{show(max(EDITION_NEEDS[packages[i]['edition']] for i in published))}")

    seen, stack = set(), list(published)
    while stack:
        for dep in nodes[stack.pop()]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & {None, "build"} and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
    deps = [packages[i] for i in seen - members]
    newest = max((version(p["rust_version"]), p["name"], p["version"]) for p in deps if p["rust_version"])
    silent = sorted(f"{p['name']} {p['version']}" for p in deps if not p["rust_version"])
    print(f"2. dependencies: {len(deps)}; newest rust-version declared: {show(newest[0])} "
          f"({newest[1]} {newest[2]}); {len(silent)} declare none: {', '.join(silent)}")
    for p in deps:
        if p["rust_version"] and version(p["rust_version"]) > msrv:
            failures.append(f"{p['name']} {p['version']} needs Rust {p['rust_version']}")

    canary = CANARY.get(msrv)
    if canary is None:
        failures.append(f"no canary for {show(msrv)}: add an API stabilised in the next version")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            crate = pathlib.Path(tmp)
            (crate / "src").mkdir()
            (crate / "Cargo.toml").write_text(
                '[package]\nname = "msrv-canary"\nversion = "0.0.0"\nedition = "2024"\n'
                f'rust-version = "{show(msrv)}"\n[workspace]\n'
            )
            (crate / "src" / "lib.rs").write_text(canary + "\n")
            run = subprocess.run(
                ["cargo", "clippy", "--quiet", "--target-dir", str(crate / "target"), "--",
                 "-D", "clippy::incompatible_msrv"],
                cwd=crate, capture_output=True, text=True,
            )
            if run.returncode == 0 or "incompatible_msrv" not in run.stderr:
                failures.append("clippy's incompatible_msrv did not flag the canary:\n" + run.stderr)
    lints = (ROOT / "Cargo.toml").read_text()
    if not re.search(r'^incompatible_msrv\s*=\s*"(deny|forbid)"', lints, re.M):
        failures.append("the workspace lints must deny clippy::incompatible_msrv")
    print("3. std API: clippy::incompatible_msrv denied in the workspace lints; "
          f"canary flagged: {'yes' if canary and not any('canary' in f for f in failures) else 'no'}")

    chains = []
    if msrv < (1, 88):
        pattern = re.compile(r"\b(if|while) let\b[^{;]*&&|&&\s*let\b")
        for path in ROOT.glob("**/*.rs"):
            rel = path.relative_to(ROOT)
            if rel.parts[0] in ("target", "fuzz") or "target" in rel.parts:
                continue
            text = path.read_text()
            # Conditions may span lines: look at each `if`/`while` up to its `{`.
            for m in pattern.finditer(re.sub(r"//[^\n]*", "", text)):
                line = text.count("\n", 0, m.start()) + 1
                chains.append(f"{rel}:{line}")
        failures += [f"let chain (Rust 1.88) at {c}" for c in chains]
    print(f"4. let chains in the sources: {len(chains)}")

    if failures:
        print("MSRV check FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"MSRV check passed for {show(msrv)}")


if __name__ == "__main__":
    main()
