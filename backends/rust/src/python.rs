//! PyO3 bindings: `Prepared`, a vector's initial state read once from its
//! `Mapping` objects, whose `run` returns each step's mappings as changes
//! of object lists (the interface the Python adapter uses); the older
//! one-call `run` on tuples (kept for tools and tests); and a stateful
//! `Model` for benchmarks. A panic anywhere in
//! the model becomes `RustPanic` (a RuntimeError, so the runner reports it
//! as the item's error) instead of PyO3's BaseException-derived
//! PanicException, which would end the pytest session.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyList};

use crate::delta::{pack, unpack, Delta, Known, ObjectId, Tracker};
use crate::mmu::Mmu;
use crate::model::{Decision, Kind, Mapping, Op, Profile, RootKind, Slot, StepResult, Vm, VmType};
use crate::radix;
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
    let mappings = mappings.iter().map(decode_mapping).collect::<Result<Vec<_>, _>>()?;
    build_from(vm, slots, private, &mappings, host_huge)
}

fn build_from(
    vm: VmTuple,
    slots: &[SlotTuple],
    private: &[(u64, u64)],
    mappings: &[Mapping],
    host_huge: &[(u64, u64, u8)],
) -> Result<Mmu, String> {
    let slots: Vec<Slot> = slots.iter().map(decode_slot).collect();
    Mmu::new(decode_vm(vm)?, &slots, private, mappings, host_huge)
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

/// The `conformance.model` objects observations are made of: the `Mapping`
/// class and the members of `Root`, `Kind` and `Level` in code order.
#[pyclass(module = "conformance_rust._mmu", frozen)]
struct Vocabulary {
    mapping: Py<PyAny>,
    roots: Vec<Py<PyAny>>,
    kinds: Vec<Py<PyAny>>,
    levels: Vec<Py<PyAny>>,
}

#[pymethods]
impl Vocabulary {
    #[new]
    fn new(mapping: Py<PyAny>, roots: Vec<Py<PyAny>>, kinds: Vec<Py<PyAny>>, levels: Vec<Py<PyAny>>) -> PyResult<Self> {
        if roots.len() != 3 || kinds.len() != 2 || levels.len() != 3 {
            return Err(PyValueError::new_err("Vocabulary(Mapping, 3 roots, 2 kinds, 3 levels)"));
        }
        Ok(Vocabulary { mapping, roots, kinds, levels })
    }
}

/// The code of `value` among `members`: by identity (enum members are
/// singletons), else by equality.
fn code_of(value: &Bound<'_, PyAny>, members: &[Py<PyAny>], what: &str) -> PyResult<u8> {
    if let Some(code) = members.iter().position(|m| value.is(m)) {
        return Ok(code as u8);
    }
    for (code, member) in members.iter().enumerate() {
        if value.eq(member)? {
            return Ok(code as u8);
        }
    }
    Err(PyValueError::new_err(format!("unknown {what}: {value}")))
}

/// A `conformance.model.Mapping` read attribute by attribute.
fn read_mapping(obj: &Bound<'_, PyAny>, words: &Vocabulary) -> PyResult<Mapping> {
    let py = obj.py();
    let invalid = obj.getattr(intern!(py, "invalid"))?;
    let kind = code_of(&obj.getattr(intern!(py, "kind"))?, &words.kinds, "kind")?;
    let level = obj.getattr(intern!(py, "level"))?;
    let level = match words.levels.iter().position(|l| level.is(l)) {
        Some(i) => i as u8 + 1,
        None => level.extract()?,
    };
    Ok(Mapping {
        as_id: obj.getattr(intern!(py, "as_id"))?.extract()?,
        root: RootKind::decode(code_of(&obj.getattr(intern!(py, "root"))?, &words.roots, "root")? as u64)
            .map_err(PyValueError::new_err)?,
        gfn: read_u64(&obj.getattr(intern!(py, "gfn"))?)?,
        level,
        kind: if kind == 0 { Kind::Shared } else { Kind::Private },
        invalid: if invalid.is(PyBool::new(py, true)) {
            true
        } else if invalid.is(PyBool::new(py, false)) {
            false
        } else {
            invalid.is_truthy()?
        },
    })
}

/// An int as u64. Where a C long has 64 bits, through `PyLong_AsLong`,
/// which reads a multi-digit int in place (3.11's `PyLong_AsUnsignedLongLong`
/// goes through `_PyLong_AsByteArray`, five times the cost for a GFN above 2^30).
fn read_u64(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if size_of::<std::ffi::c_long>() == 8 && value.is_instance_of::<PyInt>() {
        // SAFETY: `value` is a live int.
        let n = unsafe { pyo3::ffi::PyLong_AsLong(value.as_ptr()) };
        if n >= 0 {
            return Ok(n as u64);
        }
        drop(PyErr::take(value.py())); // negative, or 2^63 and up: the general path says
    }
    value.extract()
}

/// A new `Mapping` object for a leaf first seen in a run.
fn make_mapping<'py>(py: Python<'py>, m: &Mapping, words: &Vocabulary) -> PyResult<Bound<'py, PyAny>> {
    let kind = &words.kinds[(m.kind == Kind::Private) as usize];
    let level = words.levels.get(m.level as usize - 1).ok_or_else(|| PyValueError::new_err("bad level"))?;
    words.mapping.bind(py).call1((m.as_id, &words.roots[m.root.code() as usize], m.gfn, level, kind, m.invalid))
}

/// A vector's initial state, read once from its `Mapping` objects (any
/// iterable of them; in the order of their addresses, which is about the
/// order they were made in, so the reads mostly hit the cache) and built
/// into a model. `run` works on a copy, so one `Prepared` serves every
/// profile. The objects are kept: a step's mappings come back as lists of
/// them (and of objects made for leaves the run made).
#[pyclass(module = "conformance_rust._mmu", frozen)]
struct Prepared {
    words: Py<Vocabulary>,
    /// The initial `Mapping` objects; the index is the object id.
    objects: Vec<Py<PyAny>>,
    known: Known,
    mmu: Mmu,
}

type DeltaTuple<'py> = (bool, Option<u8>, Option<u8>, Option<i32>, u8, Bound<'py, PyList>, Bound<'py, PyList>);

/// Codes of `Delta` in `Prepared.run`'s results.
const SAME: u8 = 0;
const DIFF: u8 = 1;
const FULL: u8 = 2;

#[pymethods]
impl Prepared {
    #[new]
    #[pyo3(signature = (words, vm, slots, private, mappings, host_huge=Vec::new()))]
    fn new(
        words: Bound<'_, Vocabulary>,
        vm: VmTuple,
        slots: Vec<SlotTuple>,
        private: Vec<(u64, u64)>,
        mappings: &Bound<'_, PyAny>,
        host_huge: Vec<(u64, u64, u8)>,
    ) -> PyResult<Self> {
        let mut objects: Vec<Py<PyAny>> = Vec::with_capacity(mappings.len().unwrap_or(0));
        for obj in mappings.try_iter()? {
            objects.push(obj?.unbind());
        }
        if objects.len() >= ObjectId::MAX as usize / 2 {
            return Err(PyValueError::new_err("too many mappings"));
        }
        let py = mappings.py();
        // By address: held as raw owned references while sorted.
        let mut addresses: Vec<usize> = objects.into_iter().map(|o| o.into_ptr() as usize).collect();
        radix::sort_by_key(&mut addresses, |&a| a as u64);
        // SAFETY: each address is an owned reference, from `into_ptr` just above, taken back once.
        let objects: Vec<Py<PyAny>> = addresses
            .into_iter()
            .map(|a| unsafe { Bound::from_owned_ptr(py, a as *mut pyo3::ffi::PyObject) }.unbind())
            .collect();
        let vocabulary = words.get();
        let mut packed: Vec<(u64, ObjectId)> = Vec::with_capacity(objects.len());
        for (id, obj) in (0..).zip(&objects) {
            let leaf = read_mapping(obj.bind(py), vocabulary)?;
            match pack(&leaf) {
                Some(word) => packed.push((word, id)),
                // A leaf no tree holds: the model says what is wrong with it.
                None => {
                    let error = guarded(|| build_from(vm, &slots, &private, &[leaf], &host_huge)).err();
                    return Err(error.unwrap_or_else(|| PyValueError::new_err(format!("{leaf:?}: not a leaf"))));
                }
            }
        }
        // Tree by tree in GFN order, as `Mmu::new` installs them and `Known` looks them up.
        radix::sort_by_key(&mut packed, |&(word, _)| word);
        let known = Known::new(packed);
        let mmu = guarded(|| {
            let slots: Vec<Slot> = slots.iter().map(decode_slot).collect();
            let unpacked = |&(word, _): &(u64, ObjectId)| unpack(word);
            Mmu::new_sorted(decode_vm(vm)?, &slots, &private, known.leaves(), unpacked, &host_huge)
        })?;
        Ok(Prepared { words: words.unbind(), objects, known, mmu })
    }

    fn __len__(&self) -> usize {
        self.objects.len()
    }

    /// Run `steps` on a copy of the state: per step `(flush, decision,
    /// warns, errno, delta, first, second)`, the mappings after it being,
    /// by `delta`, 0: those before it (first and second empty); 1: those
    /// before it less `first` plus `second`; 2: exactly `first`. The
    /// mappings before the first step are the state's own. Object lists
    /// are in address order, so that hashing them mostly hits the cache.
    fn run<'py>(&self, py: Python<'py>, profile: u64, steps: Vec<StepTuple>) -> PyResult<Vec<DeltaTuple<'py>>> {
        let (outcomes, fresh) = guarded(|| {
            let profile = Profile::decode(profile)?;
            let ops = decode_ops(&steps)?;
            let mut mmu = self.mmu.clone();
            mmu.set_logging(true);
            let mut tracker = Tracker::new(&self.known, self.objects.len() as ObjectId);
            let mut fresh = Vec::new();
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in &ops {
                let r = run_step(&mut mmu, profile, op, Observe::Outcomes)?;
                outcomes.push((outcome(&r), tracker.observe(&mut mmu, &mut fresh)));
            }
            Ok((outcomes, fresh))
        })?;
        let words = self.words.get();
        let made = fresh.iter().map(|m| make_mapping(py, m, words)).collect::<PyResult<Vec<_>>>()?;
        let first = self.objects.len();
        let object = |id: ObjectId| match (id as usize).checked_sub(first) {
            None => self.objects[id as usize].bind(py).clone(),
            Some(i) => made[i].clone(),
        };
        let list = |mut ids: Vec<ObjectId>| {
            ids.sort_unstable();
            PyList::new(py, ids.into_iter().map(object))
        };
        outcomes
            .into_iter()
            .map(|((flush, decision, warns, errno), delta)| {
                let (code, a, b) = match delta {
                    Delta::Same => (SAME, PyList::empty(py), PyList::empty(py)),
                    Delta::Diff { gone, new } => (DIFF, list(gone)?, list(new)?),
                    Delta::Full(all) => (FULL, list(all)?, PyList::empty(py)),
                };
                Ok((flush, decision, warns, errno, code, a, b))
            })
            .collect()
    }
}

#[pymodule]
fn _mmu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_class::<Vocabulary>()?;
    m.add_class::<Prepared>()?;
    m.add_class::<Model>()?;
    m.add("RustPanic", m.py().get_type::<RustPanic>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
