//! PyO3 bindings: the compact, one-call-per-vector interface the Python
//! adapter uses, and a stateful `Model` for benchmarks. A panic anywhere in
//! the model becomes `RustPanic` (a RuntimeError, so the runner reports it
//! as the item's error) instead of PyO3's BaseException-derived
//! PanicException, which would end the pytest session.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::mmu::Mmu;
use crate::model::{Decision, Kind, Mapping, Op, Profile, RootKind, Slot, StepResult, Vm, VmType};
use crate::run::{step as run_step, Observe};

create_exception!(_mmu, RustPanic, PyRuntimeError, "The Rust model panicked; the message says where.");

type VmTuple = (u64, bool, bool, u32, bool);
type SlotTuple = (u64, u8, u64, u64, u64);
type MappingTuple = (u8, u64, u64, u8, u8, bool);
type StepTuple = (u64, Vec<u64>);
type OutcomeTuple = (bool, Option<u8>, Option<u8>, Option<i32>);

/// Run `body`, turning a panic into `RustPanic` and an error into ValueError.
fn guarded<T>(body: impl FnOnce() -> Result<T, String>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(PyValueError::new_err(message)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".into());
            Err(RustPanic::new_err(format!("rust panic: {message}")))
        }
    }
}

fn decode_vm((vm_type, tdp_mmu, rmaps, gpaw, slot_zap_all): VmTuple) -> Result<Vm, String> {
    Ok(Vm { vm_type: VmType::decode(vm_type)?, tdp_mmu, rmaps, gpaw, slot_zap_all })
}

fn decode_slot(&(id, as_id, base_gfn, npages, flags): &SlotTuple) -> Slot {
    Slot { id, as_id, base_gfn, npages, flags }
}

fn decode_mapping(&(as_id, root, gfn, level, kind, invalid): &MappingTuple) -> Result<Mapping, String> {
    let kind = if kind == 0 { Kind::Shared } else { Kind::Private };
    Ok(Mapping { as_id, root: RootKind::decode(root)?, gfn, level, kind, invalid })
}

fn encode_mapping(m: &Mapping) -> MappingTuple {
    (m.as_id, m.root.code(), m.gfn, m.level, (m.kind == Kind::Private) as u8, m.invalid)
}

fn decode_ops(steps: &[StepTuple]) -> Result<Vec<Op>, String> {
    steps.iter().map(|(code, args)| Op::decode(*code, args)).collect()
}

fn outcome(r: &StepResult) -> OutcomeTuple {
    (r.flush, r.decision.map(|d: Decision| d as u8), r.warns, r.errno)
}

fn build(
    vm: VmTuple,
    slots: &[SlotTuple],
    private: &[(u64, u64)],
    mappings: &[MappingTuple],
    host_huge: &[(u64, u64, u8)],
) -> Result<Mmu, String> {
    let slots: Vec<Slot> = slots.iter().map(decode_slot).collect();
    let mappings = mappings.iter().map(decode_mapping).collect::<Result<Vec<_>, _>>()?;
    Mmu::new(decode_vm(vm)?, &slots, private, &mappings, host_huge)
}

/// Run one vector: state and steps in, one
/// `(mappings, flush, decision, warns, errno)` per step out. `host_huge` is
/// the vector's 2M host page ranges (as_id 0 memslot GFNs).
#[pyfunction]
#[pyo3(signature = (profile, vm, slots, private, mappings, steps, host_huge=Vec::new()))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn run(
    profile: u64,
    vm: VmTuple,
    slots: Vec<SlotTuple>,
    private: Vec<(u64, u64)>,
    mappings: Vec<MappingTuple>,
    steps: Vec<StepTuple>,
    host_huge: Vec<(u64, u64, u8)>,
) -> PyResult<Vec<(Vec<MappingTuple>, bool, Option<u8>, Option<u8>, Option<i32>)>> {
    guarded(|| {
        let profile = Profile::decode(profile)?;
        let mut mmu = build(vm, &slots, &private, &mappings, &host_huge)?;
        let ops = decode_ops(&steps)?;
        ops.iter()
            .map(|op| {
                let r = run_step(&mut mmu, profile, op, Observe::Mappings)?;
                let (flush, decision, warns, errno) = outcome(&r);
                Ok((r.mappings.iter().map(encode_mapping).collect(), flush, decision, warns, errno))
            })
            .collect()
    })
}

/// A live model for benchmarks: build once, then drive step by step.
#[pyclass(module = "conformance_rust._mmu")]
struct Model {
    mmu: Mmu,
    profile: Profile,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (profile, vm, slots, private, mappings, host_huge=Vec::new()))]
    fn new(
        profile: u64,
        vm: VmTuple,
        slots: Vec<SlotTuple>,
        private: Vec<(u64, u64)>,
        mappings: Vec<MappingTuple>,
        host_huge: Vec<(u64, u64, u8)>,
    ) -> PyResult<Self> {
        guarded(|| {
            Ok(Model { profile: Profile::decode(profile)?, mmu: build(vm, &slots, &private, &mappings, &host_huge)? })
        })
    }

    /// Perform steps without observing mappings; returns each step's
    /// `(flush, decision, warns, errno)`.
    fn steps(&mut self, steps: Vec<StepTuple>) -> PyResult<Vec<OutcomeTuple>> {
        guarded(|| {
            let ops = decode_ops(&steps)?;
            ops.iter()
                .map(|op| run_step(&mut self.mmu, self.profile, op, Observe::Outcomes).map(|r| outcome(&r)))
                .collect()
        })
    }

    fn leaf_count(&self) -> usize {
        self.mmu.leaf_count()
    }

    fn mappings(&self) -> Vec<MappingTuple> {
        self.mmu.mappings().iter().map(encode_mapping).collect()
    }
}

#[pymodule]
fn _mmu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_class::<Model>()?;
    m.add("RustPanic", m.py().get_type::<RustPanic>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
