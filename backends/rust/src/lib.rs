//! An independent model of the KVM x86 MMU zap rules (docs/spec.md) on
//! radix page tables, for the kvm-mmu-conformance suite.
//!
//! `table` is the page-table tree, `mmu` the per-VM state and primitives,
//! `mainline` and `tdx_v10` the two profiles' rules, `run` the backend
//! contract, `delta` a run's observations as changes (what the Python
//! adapter takes, so that it rebuilds no leaf it already has). The PyO3 bindings (`python`) are built only with the `python`
//! feature, which maturin enables.

pub mod attrs;
pub mod common;
pub mod delta;
pub mod fxhash;
pub mod mainline;
pub mod mmu;
pub mod model;
pub mod radix;
pub mod run;
pub mod table;
pub mod tdx_v10;

#[cfg(feature = "python")]
mod python;

pub use run::{run, step, Observe};
