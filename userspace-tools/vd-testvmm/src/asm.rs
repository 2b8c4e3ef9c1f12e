//! Hand-encoded 16-bit (real-mode) x86 instructions.
//!
//! Just enough to write tiny guest programs without pulling in an assembler.
//! Every helper appends the encoding of exactly one instruction.

/// A growable buffer of real-mode machine code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RealModeCode {
    bytes: Vec<u8>,
}

impl RealModeCode {
    pub fn new() -> Self {
        Self::default()
    }

    /// `mov dx, imm16` — opcode B8+r (r = 2 for DX), little-endian imm16.
    pub fn mov_dx_imm16(mut self, imm: u16) -> Self {
        self.bytes.push(0xba);
        self.bytes.extend_from_slice(&imm.to_le_bytes());
        self
    }

    /// `mov al, imm8` — opcode B0+r (r = 0 for AL), imm8.
    pub fn mov_al_imm8(mut self, imm: u8) -> Self {
        self.bytes.extend_from_slice(&[0xb0, imm]);
        self
    }

    /// `out dx, al` — opcode EE.
    pub fn out_dx_al(mut self) -> Self {
        self.bytes.push(0xee);
        self
    }

    /// `hlt` — opcode F4.
    pub fn hlt(mut self) -> Self {
        self.bytes.push(0xf4);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// `mov dx, port; mov al, value; out dx, al` (`outs` times); `hlt`.
pub fn out_loop_then_hlt(port: u16, value: u8, outs: usize) -> Vec<u8> {
    let mut code = RealModeCode::new().mov_dx_imm16(port).mov_al_imm8(value);
    for _ in 0..outs {
        code = code.out_dx_al();
    }
    code.hlt().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_instructions_encode() {
        assert_eq!(
            RealModeCode::new().mov_dx_imm16(0x0500).into_bytes(),
            [0xba, 0x00, 0x05]
        );
        assert_eq!(
            RealModeCode::new().mov_al_imm8(0x42).into_bytes(),
            [0xb0, 0x42]
        );
        assert_eq!(RealModeCode::new().out_dx_al().into_bytes(), [0xee]);
        assert_eq!(RealModeCode::new().hlt().into_bytes(), [0xf4]);
    }

    #[test]
    fn smoke_program_bytes() {
        let expected = [
            0xba, 0x00, 0x05, // mov dx, 0x500
            0xb0, 0x42, // mov al, 0x42
            0xee, // out dx, al
            0xee, // out dx, al
            0xee, // out dx, al
            0xf4, // hlt
        ];
        assert_eq!(out_loop_then_hlt(0x500, 0x42, 3), expected);
    }
}
