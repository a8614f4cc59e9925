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
use pyo3::types::{PyBool, PyFrozenSet, PyInt, PyList, PyTuple};
use pyo3::Borrowed;

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

/// Reads `Mapping` objects: through their type's `tp_traverse` where it
/// gives what `read_mapping` would, else attribute by attribute.
///
/// `tp_traverse` (the slot `gc.get_referents` calls; stable ABI) hands a
/// visitor every object an instance refers to: for a `Mapping`, its six
/// attribute values in the order `__init__` set them (as_id, root, gfn,
/// level, kind, invalid), then its class. One call and one attribute read
/// (`gfn`) instead of six attribute reads, a third of the cost of reading a
/// state. It is used only when the referents are exactly that: seven, the
/// last the object's class, ints (exact) where as_id and gfn are, the
/// object that `gfn` reads where gfn is (so the two ints cannot be
/// swapped), members of `Root`, `Level` and `Kind` (by identity) where
/// those are, and `True` or `False` where invalid is. Anything else (a
/// subclass, a materialised `__dict__`, another interpreter's layout) is
/// read attribute by attribute.
struct Reader<'a> {
    words: &'a Vocabulary,
    /// The `Mapping` class's `tp_traverse`.
    traverse: Option<pyo3::ffi::traverseproc>,
}

/// Up to eight referents, borrowed, and how many there were.
struct Referents {
    items: [*mut pyo3::ffi::PyObject; 8],
    len: usize,
}

unsafe extern "C" fn collect(object: *mut pyo3::ffi::PyObject, arg: *mut std::ffi::c_void) -> std::ffi::c_int {
    // SAFETY: `arg` is the `Referents` that `Reader::fast` passed to tp_traverse.
    let referents = unsafe { &mut *(arg as *mut Referents) };
    if let Some(slot) = referents.items.get_mut(referents.len) {
        *slot = object;
    }
    referents.len += 1;
    0
}

impl<'a> Reader<'a> {
    fn new(py: Python<'_>, words: &'a Vocabulary) -> Self {
        let class = words.mapping.bind(py);
        let traverse = class.cast::<pyo3::types::PyType>().ok().and_then(|class| {
            // SAFETY: a live type object; the slot is a traverseproc or null.
            let slot = unsafe { pyo3::ffi::PyType_GetSlot(class.as_type_ptr(), pyo3::ffi::Py_tp_traverse) };
            // SAFETY: Py_tp_traverse holds a traverseproc.
            (!slot.is_null())
                .then(|| unsafe { std::mem::transmute::<*mut std::ffi::c_void, pyo3::ffi::traverseproc>(slot) })
        });
        Reader { words, traverse }
    }

    fn read(&self, obj: &Bound<'_, PyAny>) -> PyResult<Mapping> {
        match self.fast(obj) {
            Some(mapping) => Ok(mapping),
            None => read_mapping(obj, self.words),
        }
    }

    fn fast(&self, obj: &Bound<'_, PyAny>) -> Option<Mapping> {
        let py = obj.py();
        let traverse = self.traverse?;
        let class = self.words.mapping.bind(py);
        if !obj.get_type().is(class) {
            return None;
        }
        // Read first, so that no Python code runs between the traversal and
        // the reads of the borrowed referents.
        let gfn_attr = obj.getattr(intern!(py, "gfn")).ok()?;
        let mut found = Referents { items: [std::ptr::null_mut(); 8], len: 0 };
        // SAFETY: `traverse` is the tp_traverse of `obj`'s class; `collect`
        // only records the borrowed pointers, which stay alive while `obj`
        // is and nothing runs that could change it.
        let status = unsafe { traverse(obj.as_ptr(), collect, &mut found as *mut Referents as *mut std::ffi::c_void) };
        let [as_id, root, gfn, level, kind, invalid, last, _] = found.items;
        if status != 0 || found.len != 7 || last != class.as_ptr() || gfn != gfn_attr.as_ptr() {
            return None;
        }
        let code = |members: &[Py<PyAny>], item| members.iter().position(|m| m.as_ptr() == item);
        let (root, level, kind) =
            (code(&self.words.roots, root)?, code(&self.words.levels, level)?, code(&self.words.kinds, kind)?);
        let invalid = if invalid == PyBool::new(py, true).as_ptr() {
            true
        } else if invalid == PyBool::new(py, false).as_ptr() {
            false
        } else {
            return None;
        };
        // SAFETY: a referent of `obj`, alive (see above).
        let as_id = unsafe { Borrowed::from_ptr(py, as_id) };
        if !as_id.is_exact_instance_of::<PyInt>() || !gfn_attr.is_exact_instance_of::<PyInt>() {
            return None;
        }
        Some(Mapping {
            as_id: as_id.extract().ok()?,
            root: RootKind::decode(root as u64).ok()?,
            gfn: read_u64(&gfn_attr).ok()?,
            level: level as u8 + 1,
            kind: if kind == 0 { Kind::Shared } else { Kind::Private },
            invalid,
        })
    }
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

/// A vector's initial state, read once from its `Mapping` objects and
/// built into a model. `run` works on a copy, so one `Prepared` serves
/// every profile. A step's mappings come back as lists of the state's own
/// objects (and of objects made for leaves the run made).
///
/// The objects are found without touching them: the frozenset's
/// `tp_traverse` (as `gc.get_referents` does) lists its members, borrowed,
/// from its table, in the order of their hashes; they are then read in the
/// order of their addresses, which is about the order they were made in, so
/// the reads mostly hit the cache (in hash order, the first touch of each
/// object costs more than the rest of preparing a state). The set (or, for
/// any other iterable, a tuple of it) is kept: it keeps the members alive.
#[pyclass(module = "conformance_rust._mmu", frozen)]
struct Prepared {
    words: Py<Vocabulary>,
    /// The frozenset or tuple holding the initial `Mapping` objects: never
    /// read, held so that `objects` stay alive.
    #[allow(dead_code)]
    owner: Py<PyAny>,
    /// The addresses of the initial `Mapping` objects, borrowed from
    /// `owner`, in address order; the index is the object id.
    objects: Vec<usize>,
    known: Known,
    mmu: Mmu,
}

/// The members of `owner`, borrowed, as its `tp_traverse` visits them;
/// None unless that is exactly `len(owner)` objects.
fn members(owner: &Bound<'_, PyAny>) -> Option<Vec<usize>> {
    unsafe extern "C" fn push(object: *mut pyo3::ffi::PyObject, arg: *mut std::ffi::c_void) -> std::ffi::c_int {
        // SAFETY: `arg` is the vector `members` passed to tp_traverse.
        unsafe { (*(arg as *mut Vec<usize>)).push(object as usize) };
        0
    }
    let len = owner.len().ok()?;
    // SAFETY: a live type object; the slot is a traverseproc or null.
    let slot = unsafe { pyo3::ffi::PyType_GetSlot(owner.get_type().as_type_ptr(), pyo3::ffi::Py_tp_traverse) };
    if slot.is_null() {
        return None;
    }
    // SAFETY: Py_tp_traverse holds a traverseproc.
    let traverse = unsafe { std::mem::transmute::<*mut std::ffi::c_void, pyo3::ffi::traverseproc>(slot) };
    let mut found: Vec<usize> = Vec::with_capacity(len);
    // SAFETY: `owner`'s own tp_traverse; `push` only records the pointers.
    let status = unsafe { traverse(owner.as_ptr(), push, &mut found as *mut Vec<usize> as *mut std::ffi::c_void) };
    (status == 0 && found.len() == len).then_some(found)
}

impl Prepared {
    /// The state whose `Mapping` objects are `objects`, members of `owner`
    /// (borrowed, in address order).
    #[allow(clippy::too_many_arguments)]
    fn from_members(
        words: Bound<'_, Vocabulary>,
        owner: Bound<'_, PyAny>,
        objects: Vec<usize>,
        vm: VmTuple,
        slots: Vec<SlotTuple>,
        private: Vec<(u64, u64)>,
        host_huge: Vec<(u64, u64, u8)>,
    ) -> PyResult<Self> {
        if objects.len() >= ObjectId::MAX as usize / 2 {
            return Err(PyValueError::new_err("too many mappings"));
        }
        let py = owner.py();
        let reader = Reader::new(py, words.get());
        let mut packed: Vec<(u64, ObjectId)> = Vec::with_capacity(objects.len());
        for (id, &address) in (0..).zip(&objects) {
            // SAFETY: a member of `owner`, which is alive and immutable.
            let obj = unsafe { Borrowed::from_ptr(py, address as *mut pyo3::ffi::PyObject) };
            let leaf = reader.read(&obj)?;
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
        Ok(Prepared { words: words.unbind(), owner: owner.unbind(), objects, known, mmu })
    }

    /// The object with this id: the state's own, or one made in this run.
    fn object<'py>(&self, py: Python<'py>, id: ObjectId, made: &[Bound<'py, PyAny>]) -> Bound<'py, PyAny> {
        match (id as usize).checked_sub(self.objects.len()) {
            // SAFETY: a member of `self.owner`, alive while `self` is.
            None => unsafe { Bound::from_borrowed_ptr(py, self.objects[id as usize] as *mut pyo3::ffi::PyObject) },
            Some(i) => made[i].clone(),
        }
    }
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
        let py = mappings.py();
        // An exact frozenset holds its members for as long as it lives; any
        // other iterable is copied into a tuple, which does.
        let owner = if mappings.is_exact_instance_of::<PyFrozenSet>() {
            mappings.clone()
        } else {
            PyTuple::new(py, mappings.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any()
        };
        let mut objects = match members(&owner) {
            Some(found) => found,
            None => {
                let tuple = PyTuple::new(py, owner.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
                let found = tuple.iter_borrowed().map(|o| o.as_ptr() as usize).collect();
                return Self::from_members(words, tuple.into_any(), found, vm, slots, private, host_huge);
            }
        };
        radix::sort_by_key(&mut objects, |&a| a as u64);
        Self::from_members(words, owner, objects, vm, slots, private, host_huge)
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
        let list = |mut ids: Vec<ObjectId>| {
            ids.sort_unstable();
            PyList::new(py, ids.into_iter().map(|id| self.object(py, id, &made)))
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
