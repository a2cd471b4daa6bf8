//! Golden trace hashes: the simulator's trace of a named run, pinned in a file beside
//! this module. A change to the protocol code that keeps its behaviour keeps every hash;
//! a change in behaviour changes some, and the test names which.
//!
//! `NETPEER_GOLDEN=update` rewrites the pinned hashes of the runs that execute (review
//! the diff of the `.txt` file: every changed line is a changed trace). A run whose seed
//! comes from `NETPEER_SIM_SEED` is not compared.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Mutex, OnceLock},
};

use netpeer_proto::sim::{SEED_ENV, Sim};

fn file(set: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/pinned")
        .join(format!("{set}.txt"))
}

type Table = Mutex<BTreeMap<String, String>>;

fn table(set: &str) -> &'static Table {
    static TABLES: OnceLock<Mutex<BTreeMap<String, &'static Table>>> = OnceLock::new();
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tables.entry(set.to_owned()).or_insert_with(|| {
        let text = std::fs::read_to_string(file(set)).unwrap_or_default();
        let map = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Box::leak(Box::new(Mutex::new(map)))
    })
}

fn updating() -> bool {
    std::env::var("NETPEER_GOLDEN").is_ok_and(|v| v == "update")
}

/// Compares `hash` (of the run called `name`, in the set `set`) with its pinned value,
/// or pins it when updating.
pub(crate) fn check_hash(set: &str, name: &str, hash: u64) {
    let hash = format!("{hash:016x}");
    let table = table(set);
    let mut map = table.lock().unwrap_or_else(|e| e.into_inner());
    if updating() {
        map.insert(name.to_owned(), hash);
        let mut text = String::from(
            "# Golden trace hashes (name, FNV-1a of the simulator trace). \
             NETPEER_GOLDEN=update rewrites them.\n",
        );
        for (k, v) in map.iter() {
            text.push_str(&format!("{k} {v}\n"));
        }
        std::fs::write(file(set), text).expect("write the pinned hashes");
        return;
    }
    match map.get(name) {
        Some(pinned) => assert_eq!(
            *pinned, hash,
            "the trace of {set}/{name} changed: protocol behaviour differs from the \
             pinned run (NETPEER_GOLDEN=update re-pins it once the change is intended)"
        ),
        None => panic!("no pinned hash for {set}/{name}: run with NETPEER_GOLDEN=update"),
    }
}

/// Pins the trace of `sim` under `name` (skipped when the seed came from the environment).
pub(crate) fn check(set: &str, name: &str, sim: &Sim) {
    if std::env::var(SEED_ENV).is_ok() {
        return;
    }
    check_hash(set, name, sim.trace_hash());
}
