//! The suite's TOML vectors, checked against the crate directly.
//!
//! `cargo test` runs tools/export_vectors.py on the repository's `suites/`
//! (the Python loader expands decision tables, so it is the one reader of
//! the format) and compares every asserted observable of every
//! (vector, profile). Python: `$CONFORMANCE_PYTHON`, else the repository's
//! `.venv`, else `python3`; it needs only the standard library (3.11+).
//! Mutation testing: `CONFORMANCE_REPO=$PWD/../.. cargo mutants`.

use std::path::{Path, PathBuf};
use std::process::Command;

use conformance_rust::model::{Kind, Mapping, Op, Profile, RootKind, Slot, Vm, VmType};
use conformance_rust::run;
use serde_json::Value;

/// The repository holding `suites/` and `conformance/`: `$CONFORMANCE_REPO`
/// (for tools that build a copy of the crate elsewhere, as `cargo mutants`
/// does), else two levels above this crate.
fn repo_root() -> PathBuf {
    let root = std::env::var_os("CONFORMANCE_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    root.canonicalize().expect("repository root")
}

fn python(repo: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("CONFORMANCE_PYTHON") {
        return path.into();
    }
    let venv = repo.join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

fn export(suites: &Path) -> Vec<Value> {
    let repo = repo_root();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pythonpath = std::env::join_paths([repo.clone(), crate_dir.join("python")]).unwrap();
    let out = Command::new(python(&repo))
        .arg(crate_dir.join("tools/export_vectors.py"))
        .arg(suites)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("run tools/export_vectors.py");
    assert!(out.status.success(), "exporting {} failed:\n{}", suites.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).expect("exporter JSON").as_array().expect("a list").clone()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().or_else(|| x.as_bool().map(u64::from)).expect("int"))
        .collect()
}

fn mapping(v: &Value) -> Mapping {
    let f = u64s(v);
    Mapping {
        as_id: f[0] as u8,
        root: RootKind::decode(f[1]).unwrap(),
        gfn: f[2],
        level: f[3] as u8,
        kind: if f[4] == 0 { Kind::Shared } else { Kind::Private },
        invalid: f[5] != 0,
    }
}

fn mappings(v: &Value) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = v.as_array().expect("mappings").iter().map(mapping).collect();
    out.sort_unstable();
    out
}

/// Run one exported item; the differences from its expectations.
fn check(item: &Value) -> Vec<String> {
    let vm = u64s(&item["vm"]);
    let vm = Vm {
        vm_type: VmType::decode(vm[0]).unwrap(),
        tdp_mmu: vm[1] != 0,
        rmaps: vm[2] != 0,
        gpaw: vm[3] as u32,
        slot_zap_all: vm[4] != 0,
    };
    let slots: Vec<Slot> = item["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = u64s(s);
            Slot { id: f[0], as_id: f[1] as u8, base_gfn: f[2], npages: f[3], flags: f[4] }
        })
        .collect();
    let private: Vec<(u64, u64)> = item["private"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = u64s(r);
            (f[0], f[1])
        })
        .collect();
    let host_huge: Vec<(u64, u64, u8)> = item["host_huge"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = u64s(r);
            (f[0], f[1], f[2] as u8)
        })
        .collect();
    let steps = item["steps"].as_array().unwrap();
    let ops: Vec<Op> = steps
        .iter()
        .map(|s| {
            let op = s["op"].as_array().unwrap();
            Op::decode(op[0].as_u64().unwrap(), &u64s(&op[1])).unwrap()
        })
        .collect();
    let profile = Profile::decode(item["profile"].as_u64().unwrap()).unwrap();
    let results = match run(profile, vm, &slots, &private, &mappings(&item["mappings"]), &host_huge, &ops) {
        Ok(results) => results,
        Err(e) => return vec![format!("error: {e}")],
    };
    if results.len() != steps.len() {
        return vec![format!("{} observations for {} steps", results.len(), steps.len())];
    }
    let mut diffs = Vec::new();
    for (i, (step, got)) in steps.iter().zip(&results).enumerate() {
        let expect = &step["expect"];
        let at = format!("step {} (line {})", i + 1, step["line"]);
        if let Some(want) = expect.get("mappings") {
            let want = mappings(want);
            if want != got.mappings {
                let missing: Vec<_> = want.iter().filter(|m| !got.mappings.contains(m)).collect();
                let extra: Vec<_> = got.mappings.iter().filter(|m| !want.contains(m)).collect();
                diffs.push(format!("{at}: mappings: missing {missing:?}, unexpected {extra:?}"));
            }
        }
        if let Some(want) = expect.get("flush").and_then(Value::as_bool) {
            if want != got.flush {
                diffs.push(format!("{at}: flush: expected {want}, observed {}", got.flush));
            }
        }
        if let Some(want) = expect.get("decision").and_then(Value::as_u64) {
            if Some(want) != got.decision.map(|d| d as u64) {
                diffs.push(format!("{at}: decision: expected {want}, observed {:?}", got.decision));
            }
        }
        if let Some(want) = expect.get("warns").and_then(Value::as_u64) {
            if Some(want) != got.warns.map(u64::from) {
                diffs.push(format!("{at}: warns: expected {want:#b}, observed {:?}", got.warns));
            }
        }
        if let Some(want) = expect.get("errno").and_then(Value::as_i64) {
            if Some(want) != got.errno.map(i64::from) {
                diffs.push(format!("{at}: errno: expected {want}, observed {:?}", got.errno));
            }
        }
    }
    diffs
}

#[test]
fn every_suite_vector_passes() {
    let items = export(&repo_root().join("suites"));
    assert!(!items.is_empty(), "no vectors exported from suites/");
    let failures: Vec<String> = items
        .iter()
        .filter_map(|item| {
            let diffs = check(item);
            (!diffs.is_empty()).then(|| format!("{} ({})\n  {}", item["id"], item["where"], diffs.join("\n  ")))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} items failed:\n{}", failures.len(), items.len(), failures.join("\n"));
    eprintln!("{} (vector, profile) items passed", items.len());
}
