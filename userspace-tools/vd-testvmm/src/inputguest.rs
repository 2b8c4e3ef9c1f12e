//! The guest side of a vd_input_irq event ring, as a real-mode x86 program: it asks for an
//! interrupt at the next event (`rsp_event`), sleeps in `hlt`, and on each wake-up consumes every
//! event the host published, counting them and the key events among them, until it has seen
//! the number it was told to expect. Same memory layout as [`crate::ringguest`]; ring offsets
//! come from `vd-ring`, the event layout from `vd-uapi`.

use crate::ringguest::{param, IRQ_LINE, RING_GPA, VECTOR_BASE};
use core::mem::offset_of;
use vd_ring::{OFF_RSP_CONS, OFF_RSP_EVENT, OFF_RSP_PROD, RSP_HDR};
use vd_uapi::VdiEvent;

/// Result block (written by the guest).
pub mod result {
    /// Events consumed.
    pub const EVENTS: u64 = 0x540;
    /// `EV_KEY` events among them.
    pub const KEYS: u64 = 0x544;
    /// Interrupts taken.
    pub const IRQS: u64 = 0x548;
    /// End of the block.
    pub const END: u64 = 0x550;
}

/// `EV_KEY`.
const EV_KEY: u32 = 1;

core::arch::global_asm!(
    ".pushsection .text.vd_guest, \"ax\"",
    ".globl vdi_guest_start",
    ".globl vdi_guest_irq",
    ".globl vdi_guest_end",
    ".code16",
    "vdi_guest_start:",
    crate::real_mode_prologue!(),
    "    xor ebp, ebp",                               // ebp: rsp_cons
    "    mov dword ptr es:[{rsp_event}], 0",          // interrupt at the first event
    "    mfence",
    "vdi_wait:",
    "    cli",
    "    mov esi, dword ptr es:[{rsp_prod}]",
    "    cmp esi, ebp",
    "    jne vdi_consume",
    "    sti",
    "    hlt",
    "    jmp vdi_wait",
    "vdi_consume:",
    "    sti",
    "vdi_next:",
    "    cmp ebp, esi",
    "    je vdi_consumed",
    "    mov eax, ebp",
    "    and eax, dword ptr [{p_mask}]",
    "    imul eax, dword ptr [{p_entry_size}]",
    "    add eax, dword ptr [{p_rsp_array}]",
    "    movzx edx, word ptr es:[eax + {ev_ty}]",
    "    cmp edx, {ev_key}",
    "    jne vdi_not_key",
    "    inc dword ptr [{r_keys}]",
    "vdi_not_key:",
    "    inc dword ptr [{r_events}]",
    "    inc ebp",
    "    jmp vdi_next",
    "vdi_consumed:",
    // Free the slots and ask for an interrupt when the next event is published.
    "    mov dword ptr es:[{rsp_cons}], ebp",
    "    mov dword ptr es:[{rsp_event}], ebp",
    "    mfence",
    "    mov eax, dword ptr [{r_events}]",
    "    cmp eax, dword ptr [{p_n}]",
    "    jb vdi_wait",
    "    mov dx, word ptr [{p_done_port}]",
    "    out dx, al",
    "vdi_halt:",
    "    hlt",
    "    jmp vdi_halt",
    "vdi_guest_irq:",
    crate::real_mode_irq_epilogue!(),
    "vdi_guest_end:",
    ".code64",
    ".popsection",
    ring_seg = const RING_GPA >> 4,
    vector_base = const VECTOR_BASE,
    p_pic_mask = const param::PIC_MASK,
    p_n = const param::N,
    p_mask = const param::MASK,
    p_entry_size = const param::ENTRY_SIZE,
    p_rsp_array = const param::RSP_ARRAY,
    p_done_port = const param::DONE_PORT,
    r_events = const result::EVENTS,
    r_keys = const result::KEYS,
    r_irqs = const result::IRQS,
    ev_ty = const RSP_HDR + offset_of!(VdiEvent, ty),
    ev_key = const EV_KEY,
    rsp_event = const OFF_RSP_EVENT,
    rsp_prod = const OFF_RSP_PROD,
    rsp_cons = const OFF_RSP_CONS,
);

extern "C" {
    static vdi_guest_start: u8;
    static vdi_guest_irq: u8;
    static vdi_guest_end: u8;
}

/// The program's bytes and the offset of its interrupt handler in them.
pub fn program() -> crate::ringguest::Program {
    // SAFETY: the three labels are emitted above, in this order.
    unsafe {
        crate::ringguest::program_between(
            core::ptr::addr_of!(vdi_guest_start),
            core::ptr::addr_of!(vdi_guest_irq),
            core::ptr::addr_of!(vdi_guest_end),
        )
    }
}

/// The PIC mask that enables only the call eventfd's line.
pub const PIC_MASK: u8 = !(1u8 << IRQ_LINE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_assembled() {
        let (code, irq) = program();
        assert_eq!(code[0], 0xfa, "starts with cli");
        assert_eq!(code[irq as usize], 0x50, "handler starts with push ax");
        assert_eq!(code.last(), Some(&0xcf), "ends with iret");
        assert!(result::END <= u64::from(crate::ringguest::CODE_GPA));
    }
}
