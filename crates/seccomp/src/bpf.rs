//! Classic BPF instructions and an emitter that builds a program back to front.
//!
//! Classic BPF jumps only forward, and conditional jumps reach at most 255
//! instructions. Emitting from the last instruction to the first means every jump
//! target already has a known position when the jump is written; a target out of
//! reach gets a bridge placed right after the jump: a copy of the `ret` when the
//! target is a return, or an unconditional `ja` (32-bit offset) otherwise.

/// One classic BPF instruction, laid out like the kernel's `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset `k` of `seccomp_data`.
pub(crate) const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(crate) const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub(crate) const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub(crate) const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub(crate) const JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub(crate) const RET_K: u16 = 0x06;

/// The farthest a conditional jump reaches.
const MAX_COND_JUMP: usize = u8::MAX as usize;

/// Where a jump goes: an instruction already emitted, or "return this value" (any
/// `ret` with that value in reach will do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    At(usize),
    Ret(u32),
}

/// Builds a program in reverse; positions are indices into the reversed program.
#[derive(Debug, Default)]
pub(crate) struct Emitter {
    rev: Vec<Insn>,
    /// The most recent position of each `ret` value emitted so far.
    rets: Vec<(u32, usize)>,
}

impl Emitter {
    pub(crate) fn with_capacity(n: usize) -> Emitter {
        Emitter {
            rev: Vec::with_capacity(n),
            rets: Vec::with_capacity(8),
        }
    }

    /// The instruction that runs next after whatever is emitted now.
    pub(crate) fn next(&self) -> Target {
        match self.rev.len() {
            0 => panic!("bpf emitter: no instruction emitted yet"),
            n => Target::At(n - 1),
        }
    }

    fn push(&mut self, insn: Insn) -> usize {
        self.rev.push(insn);
        self.rev.len() - 1
    }

    /// `ret k`.
    pub(crate) fn ret(&mut self, k: u32) -> Target {
        let at = self.push(Insn {
            code: RET_K,
            jt: 0,
            jf: 0,
            k,
        });
        match self.rets.iter_mut().find(|(v, _)| *v == k) {
            Some(slot) => slot.1 = at,
            None => self.rets.push((k, at)),
        }
        Target::At(at)
    }

    /// `ld [offset]`: load a word of `seccomp_data`.
    pub(crate) fn load(&mut self, offset: u32) -> Target {
        Target::At(self.push(Insn {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: offset,
        }))
    }

    /// `and #k`.
    pub(crate) fn and(&mut self, k: u32) -> Target {
        Target::At(self.push(Insn {
            code: ALU_AND_K,
            jt: 0,
            jf: 0,
            k,
        }))
    }

    /// Unconditional jump; a return target becomes the `ret` itself.
    pub(crate) fn goto(&mut self, to: Target) -> Target {
        match to {
            Target::Ret(k) => self.ret(k),
            Target::At(at) => {
                let pos = self.rev.len();
                let off = u32::try_from(pos - at - 1).expect("bpf program length fits u32");
                Target::At(self.push(Insn {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: off,
                }))
            }
        }
    }

    /// Conditional jump `code k`, to `jt` when true and `jf` when false.
    pub(crate) fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> Target {
        let mut t = self.locate(jt);
        let mut f = self.locate(jf);
        loop {
            let pos = self.rev.len();
            let far_t = t.is_none_or(|at| pos - at - 1 > MAX_COND_JUMP);
            let far_f = f.is_none_or(|at| pos - at - 1 > MAX_COND_JUMP);
            if far_t {
                t = Some(self.bridge(jt, t));
            } else if far_f {
                f = Some(self.bridge(jf, f));
            } else {
                break;
            }
        }
        let pos = self.rev.len();
        let dist = |at: Option<usize>| {
            let at = at.expect("jump targets located above");
            u8::try_from(pos - at - 1).expect("jump distance checked above")
        };
        let insn = Insn {
            code,
            jt: dist(t),
            jf: dist(f),
            k,
        };
        Target::At(self.push(insn))
    }

    /// The position of an existing instruction for `to`, if there is one.
    fn locate(&self, to: Target) -> Option<usize> {
        match to {
            Target::At(at) => Some(at),
            Target::Ret(k) => self.rets.iter().find(|(v, _)| *v == k).map(|r| r.1),
        }
    }

    /// Emit an instruction right here that leads to `to` (whose current position, if
    /// any, is `at`), and return its position.
    fn bridge(&mut self, to: Target, at: Option<usize>) -> usize {
        let placed = match (to, at) {
            (Target::Ret(k), _) => self.ret(k),
            (Target::At(_), Some(at)) => self.goto(Target::At(at)),
            (Target::At(_), None) => unreachable!("positions always exist"),
        };
        match placed {
            Target::At(at) => at,
            Target::Ret(_) => unreachable!("ret and goto return positions"),
        }
    }

    /// The finished program in execution order.
    pub(crate) fn finish(mut self) -> Vec<Insn> {
        self.rev.reverse();
        self.rev
    }
}

/// A classic BPF interpreter for the subset the compiler emits, to check programs
/// without loading them into a kernel.
#[cfg(test)]
pub(crate) fn run(prog: &[Insn], data: &[u8; 64]) -> u32 {
    run_counted(prog, data).0
}

/// [`run`], also returning how many instructions executed.
#[cfg(test)]
pub(crate) fn run_counted(prog: &[Insn], data: &[u8; 64]) -> (u32, usize) {
    let mut steps = 0usize;
    let mut pc = 0usize;
    let mut a: u32 = 0;
    loop {
        let i = prog[pc];
        pc += 1;
        steps += 1;
        let cond = |ok: bool| {
            if ok {
                usize::from(i.jt)
            } else {
                usize::from(i.jf)
            }
        };
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                a = u32::from_ne_bytes(data[o..o + 4].try_into().expect("4 bytes"));
            }
            ALU_AND_K => a &= i.k,
            JMP_JA => pc += i.k as usize,
            JMP_JEQ_K => pc += cond(a == i.k),
            JMP_JGT_K => pc += cond(a > i.k),
            JMP_JGE_K => pc += cond(a >= i.k),
            RET_K => return (i.k, steps),
            other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(nr: u32) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[..4].copy_from_slice(&nr.to_ne_bytes());
        d
    }

    #[test]
    fn far_targets_get_bridges() {
        let mut e = Emitter::default();
        let far = e.ret(7);
        for _ in 0..300 {
            e.ret(1);
        }
        e.load(0);
        // The true branch must reach `ret 7`, 301 instructions away.
        e.jump(JMP_JEQ_K, 5, Target::Ret(7), far);
        e.load(0);
        let prog = e.finish();
        assert_eq!(run(&prog, &data(5)), 7);
        assert_eq!(run(&prog, &data(6)), 7);
        let mut e = Emitter::default();
        e.ret(9);
        let far = e.load(0);
        e.ret(3);
        for _ in 0..300 {
            e.ret(1);
        }
        // Both branches are out of reach: a `ret 3` copy and a `ja` get placed.
        e.jump(JMP_JGT_K, 5, Target::Ret(3), far);
        e.load(0);
        let prog = e.finish();
        assert_eq!(run(&prog, &data(6)), 3);
        assert_eq!(run(&prog, &data(5)), 9);
    }
}
