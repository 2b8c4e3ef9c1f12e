//! The guest side of a vd ring, as a real-mode x86 program that runs inside a KVM guest.
//!
//! The program is the frontend a paravirtual guest driver would be: it writes echo requests into
//! the channel's request slots, publishes `req_prod`, kicks the host through an `out` to the kick
//! port only when the backend asked for it (EVENT_IDX), asks for one interrupt per batch through
//! `rsp_event`, sleeps in `hlt` until the interrupt arrives, then checks every response (id,
//! status, length and payload) and advances `rsp_cons`.
//!
//! Every ring offset and opcode is an operand taken from the `vd-ring` crate, so the guest program
//! cannot drift from the ring layout the kernel module uses. The program is position-independent
//! (relative jumps only; data at fixed guest-physical addresses) and is copied into guest memory
//! from this binary's own text.
//!
//! # Guest-physical layout
//!
//! ```text
//! 0x0000  real-mode interrupt vector table (the VMM fills the one vector used)
//! 0x0500  parameter block (VMM writes) and result block (guest writes), u32 fields
//! 0x1000  this program
//! 0x7000  top of the stack
//! 0x8000  latency samples: one u32 TSC delta per batch (the first SAMPLES, or a ring: SAMPLE_WRAP)
//! 0x10000 the channel's ring (a second memory slot: the vd_evtchn mmap), addressed through ES
//! ```

use vd_ring::{
    op, OFF_REQ_EVENT, OFF_REQ_PROD, OFF_RSP_CONS, OFF_RSP_EVENT, OFF_RSP_PROD, OFF_STATUS,
    STATUS_FAILED,
};

/// Guest RAM (slot 0) size: one real-mode segment.
pub const MEM_SIZE: usize = 0x10000;
/// Where the program is loaded and starts.
pub const CODE_GPA: u16 = 0x1000;
/// Where the ring is mapped; also its real-mode segment base.
pub const RING_GPA: u64 = 0x10000;
/// Largest ring the real-mode program can address through one segment.
pub const RING_MAX: usize = 0x10000;
/// 8259 vector base the program programs; IRQ line `IRQ_LINE` arrives as `VECTOR_BASE + IRQ_LINE`.
pub const VECTOR_BASE: u8 = 0x20;
/// PIC line (= KVM GSI) the call eventfd is routed to with `KVM_IRQFD`.
pub const IRQ_LINE: u8 = 5;
/// Latency sample area and its capacity.
pub const SAMPLES_GPA: u64 = 0x8000;
/// Most samples kept.
pub const MAX_SAMPLES: u32 = 0x2000;
/// The request payload is `id ^ PATTERN` then its complement (8 bytes).
pub const PATTERN: u32 = 0xa5a5_a5a5;
/// Payload bytes of each request.
pub const PAYLOAD: u32 = 8;

/// Parameter block (written by the VMM before the vCPU runs).
pub mod param {
    /// Requests to send in total.
    pub const N: u64 = 0x500;
    /// Requests per batch (one publish, at most one kick, one interrupt asked for).
    pub const BATCH: u64 = 0x504;
    /// Port whose `out` is the doorbell (an ioeventfd, or an exit to the VMM).
    pub const KICK_PORT: u64 = 0x508;
    /// Port whose `out` ends the run (always an exit to the VMM).
    pub const DONE_PORT: u64 = 0x50c;
    /// `entries - 1`.
    pub const MASK: u64 = 0x510;
    /// Slot size.
    pub const ENTRY_SIZE: u64 = 0x514;
    /// Offset of the request array in the ring.
    pub const REQ_ARRAY: u64 = 0x518;
    /// Offset of the response array in the ring.
    pub const RSP_ARRAY: u64 = 0x51c;
    /// PIC interrupt mask (a clear bit enables that line).
    pub const PIC_MASK: u64 = 0x520;
    /// Non-zero: behave as a hostile guest and publish this `req_prod` instead of requests.
    pub const HOSTILE: u64 = 0x524;
    /// Latency samples to keep (at most [`super::MAX_SAMPLES`]).
    pub const SAMPLES: u64 = 0x528;
    /// Non-zero: keep sampling every batch into a ring of [`super::MAX_SAMPLES`] slots (slot =
    /// count % MAX_SAMPLES) instead of stopping at `SAMPLES`; `result::NSAMPLES` is then the
    /// running count (the long-running probe reads it while the guest runs).
    pub const SAMPLE_WRAP: u64 = 0x52c;
}

/// Result block (written by the guest).
pub mod result {
    /// Responses that matched their request.
    pub const OK: u64 = 0x540;
    /// Responses that did not (wrong id, status, length or payload).
    pub const BAD: u64 = 0x544;
    /// Interrupts taken.
    pub const IRQS: u64 = 0x548;
    /// Kicks sent.
    pub const KICKS: u64 = 0x54c;
    /// Kicks the EVENT_IDX rule let the guest skip.
    pub const SUPPRESSED: u64 = 0x550;
    /// 1 if the guest saw the backend's FAILED status.
    pub const FAILED: u64 = 0x554;
    /// Latency samples written.
    pub const NSAMPLES: u64 = 0x558;
    /// End of the result block.
    pub const END: u64 = 0x560;
}

core::arch::global_asm!(
    ".pushsection .text.vd_guest, \"ax\"",
    ".globl vd_guest_start",
    ".globl vd_guest_irq",
    ".globl vd_guest_end",
    ".code16",
    "vd_guest_start:",
    crate::real_mode_prologue!(),
    "    xor ebx, ebx",                              // ebx: req_prod (= id of the next request)
    "    xor ebp, ebp",                              // ebp: rsp_cons (= id of the next response)
    "    mov eax, dword ptr [{p_hostile}]",
    "    test eax, eax",
    "    jnz vdg_hostile",
    "vdg_outer:",
    "    mov eax, dword ptr [{p_n}]",
    "    cmp ebx, eax",
    "    jae vdg_done",
    "    sub eax, ebx",
    "    mov ecx, dword ptr [{p_batch}]",
    "    cmp ecx, eax",
    "    jbe vdg_batch_ok",
    "    mov ecx, eax",
    "vdg_batch_ok:",
    "    mov edi, ebx",                              // edi: req_prod before this batch
    "    rdtsc",
    "    mov esi, eax",                              // esi: batch start (TSC, low half)
    "vdg_fill:",
    "    mov eax, ebx",
    "    and eax, dword ptr [{p_mask}]",
    "    imul eax, dword ptr [{p_entry_size}]",
    "    add eax, dword ptr [{p_req_array}]",
    "    mov dword ptr es:[eax], ebx",               // id (low)
    "    mov dword ptr es:[eax + 4], 0",             // id (high)
    "    mov dword ptr es:[eax + 8], {op_echo}",     // op, flags = 0
    "    mov dword ptr es:[eax + 12], {payload}",    // len
    "    mov edx, ebx",
    "    xor edx, {pattern}",
    "    mov dword ptr es:[eax + 16], edx",
    "    not edx",
    "    mov dword ptr es:[eax + 20], edx",
    "    inc ebx",
    "    dec ecx",
    "    jnz vdg_fill",
    // Ask for one interrupt when the whole batch is answered (rsp_event = new req_prod - 1),
    // before publishing, so the backend sees the request when it publishes the answers.
    "    mov eax, ebx",
    "    dec eax",
    "    mov dword ptr es:[{rsp_event}], eax",
    // Publish. x86 keeps stores in order, so the slots (and rsp_event) are visible before
    // req_prod; the full fence orders the req_prod store before the req_event load (the ring's
    // contract).
    "    mov dword ptr es:[{req_prod}], ebx",
    "    mfence",
    // EVENT_IDX: kick iff (new - event - 1) < (new - old).
    "    mov eax, ebx",
    "    sub eax, dword ptr es:[{req_event}]",
    "    dec eax",
    "    mov edx, ebx",
    "    sub edx, edi",
    "    cmp eax, edx",
    "    jae vdg_no_kick",
    "    mov dx, word ptr [{p_kick_port}]",
    "    out dx, al",
    "    inc dword ptr [{r_kicks}]",
    "    jmp vdg_wait",
    "vdg_no_kick:",
    "    inc dword ptr [{r_suppressed}]",
    "vdg_wait:",
    "    cli",
    "    test dword ptr es:[{status}], {failed}",
    "    jnz vdg_failed",
    "    mov eax, dword ptr es:[{rsp_prod}]",
    "    cmp eax, ebx",
    "    je vdg_answered",
    // `sti; hlt`: the interrupt cannot slip in between (sti's one-instruction shadow).
    "    sti",
    "    hlt",
    "    jmp vdg_wait",
    "vdg_answered:",
    "    sti",
    "    rdtsc",
    "    sub eax, esi",
    "    mov ecx, dword ptr [{r_nsamples}]",
    // SAMPLE_WRAP: a ring of MAX_SAMPLES samples, the count keeps going (the VMM reads it live).
    "    cmp dword ptr [{p_sample_wrap}], 0",
    "    je vdg_sample_bounded",
    "    and ecx, {sample_mask}",
    "    jmp vdg_sample_store",
    "vdg_sample_bounded:",
    "    cmp ecx, dword ptr [{p_samples}]",
    "    jae vdg_consume",
    "vdg_sample_store:",
    "    mov dword ptr [{samples} + ecx * 4], eax",
    "    inc dword ptr [{r_nsamples}]",
    "vdg_consume:",
    "    cmp ebp, ebx",
    "    je vdg_outer",
    "    mov eax, ebp",
    "    and eax, dword ptr [{p_mask}]",
    "    imul eax, dword ptr [{p_entry_size}]",
    "    add eax, dword ptr [{p_rsp_array}]",
    "    cmp dword ptr es:[eax], ebp",                // id
    "    jne vdg_bad",
    "    cmp dword ptr es:[eax + 4], 0",
    "    jne vdg_bad",
    "    cmp dword ptr es:[eax + 8], 0",              // status
    "    jne vdg_bad",
    "    cmp dword ptr es:[eax + 12], {payload}",     // len
    "    jne vdg_bad",
    "    mov edx, ebp",
    "    xor edx, {pattern}",
    "    cmp dword ptr es:[eax + 16], edx",
    "    jne vdg_bad",
    "    not edx",
    "    cmp dword ptr es:[eax + 20], edx",
    "    jne vdg_bad",
    "    inc dword ptr [{r_ok}]",
    "    jmp vdg_next",
    "vdg_bad:",
    "    inc dword ptr [{r_bad}]",
    "vdg_next:",
    "    inc ebp",
    "    mov dword ptr es:[{rsp_cons}], ebp",
    "    jmp vdg_consume",
    // Hostile: claim far more requests than the ring holds, kick, and wait for the verdict (the
    // backend interrupts once when it fails a ring).
    "vdg_hostile:",
    "    mov ebx, eax",
    "    mov dword ptr es:[{req_prod}], ebx",
    "    mfence",
    "    mov dx, word ptr [{p_kick_port}]",
    "    out dx, al",
    "    inc dword ptr [{r_kicks}]",
    "    jmp vdg_wait",
    "vdg_failed:",
    "    sti",
    "    mov dword ptr [{r_failed}], 1",
    "vdg_done:",
    "    mov dx, word ptr [{p_done_port}]",
    "    out dx, al",
    "vdg_halt:",
    "    hlt",
    "    jmp vdg_halt",
    // The call eventfd's interrupt: count it, end it at the PIC.
    "vd_guest_irq:",
    crate::real_mode_irq_epilogue!(),
    "vd_guest_end:",
    ".code64",
    ".popsection",
    ring_seg = const RING_GPA >> 4,
    vector_base = const VECTOR_BASE,
    p_pic_mask = const param::PIC_MASK,
    p_hostile = const param::HOSTILE,
    p_n = const param::N,
    p_batch = const param::BATCH,
    p_mask = const param::MASK,
    p_entry_size = const param::ENTRY_SIZE,
    p_req_array = const param::REQ_ARRAY,
    p_rsp_array = const param::RSP_ARRAY,
    p_kick_port = const param::KICK_PORT,
    p_done_port = const param::DONE_PORT,
    p_samples = const param::SAMPLES,
    p_sample_wrap = const param::SAMPLE_WRAP,
    sample_mask = const MAX_SAMPLES - 1,
    r_ok = const result::OK,
    r_bad = const result::BAD,
    r_irqs = const result::IRQS,
    r_kicks = const result::KICKS,
    r_suppressed = const result::SUPPRESSED,
    r_failed = const result::FAILED,
    r_nsamples = const result::NSAMPLES,
    samples = const SAMPLES_GPA,
    op_echo = const op::ECHO,
    payload = const PAYLOAD,
    pattern = const PATTERN,
    req_prod = const OFF_REQ_PROD,
    req_event = const OFF_REQ_EVENT,
    rsp_event = const OFF_RSP_EVENT,
    rsp_prod = const OFF_RSP_PROD,
    rsp_cons = const OFF_RSP_CONS,
    status = const OFF_STATUS,
    failed = const STATUS_FAILED,
);

extern "C" {
    static vd_guest_start: u8;
    static vd_guest_irq: u8;
    static vd_guest_end: u8;
}

/// An assembled guest program: its bytes and the offset of its interrupt handler in them.
pub type Program = (&'static [u8], u16);

/// The program between the labels `start` and `end`, with its handler at `irq`.
///
/// # Safety
///
/// The three are labels of one `global_asm!` program in this binary's text, `start <= irq < end`.
pub unsafe fn program_between(start: *const u8, irq: *const u8, end: *const u8) -> Program {
    // SAFETY: per the contract, `start..end` is assembled code, readable for the life of the
    // process (part of this binary's text) and never written.
    unsafe {
        (
            core::slice::from_raw_parts(start, end as usize - start as usize),
            (irq as usize - start as usize) as u16,
        )
    }
}

/// The program's bytes and the offset of its interrupt handler in them.
pub fn program() -> Program {
    // SAFETY: the three labels are emitted above, in this order.
    unsafe {
        program_between(
            core::ptr::addr_of!(vd_guest_start),
            core::ptr::addr_of!(vd_guest_irq),
            core::ptr::addr_of!(vd_guest_end),
        )
    }
}

/// Loads `p` at [`CODE_GPA`], points the call eventfd's interrupt vector at its handler and
/// writes the parameter block.
pub fn load(guest: &crate::guest::Guest, p: Program, params: &[(u64, u32)]) -> anyhow::Result<()> {
    guest.write(u64::from(CODE_GPA), p.0)?;
    guest.write_u32(
        u64::from(VECTOR_BASE + IRQ_LINE) * 4,
        u32::from(CODE_GPA + p.1),
    )?;
    for &(gpa, v) in params {
        guest.write_u32(gpa, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_assembled_and_fits() {
        let (code, irq) = program();
        assert!(code.len() > 64, "program is {} bytes", code.len());
        assert!(
            (CODE_GPA as usize + code.len()) < 0x7000,
            "program overlaps the stack"
        );
        // Real-mode entry: `cli` first; the handler ends with `iret`.
        assert_eq!(code[0], 0xfa);
        assert!((irq as usize) < code.len());
        assert_eq!(*code.last().unwrap(), 0xcf);
        // The handler starts with `push ax`.
        assert_eq!(code[irq as usize], 0x50);
    }

    #[test]
    fn layout_does_not_overlap() {
        assert!(result::END <= u64::from(CODE_GPA));
        const { assert!(param::SAMPLES < result::OK) };
        const { assert!(param::SAMPLE_WRAP + 4 <= result::OK) };
        assert!(MAX_SAMPLES.is_power_of_two(), "the wrap is a mask");
        assert!(SAMPLES_GPA + u64::from(MAX_SAMPLES) * 4 <= MEM_SIZE as u64);
        assert!(u64::from(VECTOR_BASE + IRQ_LINE) * 4 + 4 <= param::N);
    }
}
