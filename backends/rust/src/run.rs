//! Running a vector: build the state, perform the steps, observe.

use crate::mmu::Mmu;
use crate::model::{Mapping, Op, Profile, Slot, StepResult, Vm};
use crate::{mainline, tdx_v10};

/// How much each step reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// The complete mapping set after every step (conformance runs).
    Mappings,
    /// Only flush, decision, WARNs and errno (benchmarks).
    Outcomes,
}

/// Perform one operation and observe it.
pub fn step(mmu: &mut Mmu, profile: Profile, op: &Op, observe: Observe) -> Result<StepResult, String> {
    let flushes_before = mmu.remote_flushes;
    mmu.warns = 0;
    let outcome = match profile {
        Profile::Mainline => mainline::step(mmu, op)?,
        Profile::TdxV10 => tdx_v10::step(mmu, op)?,
    };
    let call = op.is_call();
    Ok(StepResult {
        mappings: if observe == Observe::Mappings { mmu.mappings() } else { Vec::new() },
        flush: outcome.flush.unwrap_or(mmu.remote_flushes > flushes_before),
        decision: if call { outcome.decision } else { None },
        warns: call.then_some(mmu.warns),
        errno: (!call).then_some(outcome.errno),
    })
}

/// The backend contract in compact form: one observation per step.
pub fn run(
    profile: Profile,
    vm: Vm,
    slots: &[Slot],
    private: &[(u64, u64)],
    mappings: &[Mapping],
    host_huge: &[(u64, u64, u8)],
    ops: &[Op],
) -> Result<Vec<StepResult>, String> {
    let mut mmu = Mmu::new(vm, slots, private, mappings, host_huge)?;
    ops.iter().map(|op| step(&mut mmu, profile, op, Observe::Mappings)).collect()
}
