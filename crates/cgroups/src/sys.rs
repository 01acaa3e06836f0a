//! Raw system calls: bpf(2) for the v2 device filter. The only module with `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BpfInsn {
    pub(crate) code: u8,
    /// dst register in the low nibble, src in the high one.
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

/// A bpf(2) step of installing the device filter failed.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The verifier refused the program; `log` is its output.
    #[error("load device program: {log}")]
    Load {
        /// The cause.
        source: io::Error,
        /// The verifier log (may be empty).
        log: String,
    },
    /// Listing the programs attached to the cgroup failed.
    #[error("query attached device programs")]
    Query(#[source] io::Error),
    /// Attaching the new program failed.
    #[error("attach device program")]
    Attach(#[source] io::Error),
    /// Detaching a previous program failed.
    #[error("detach previous device program {id}")]
    Detach {
        /// Its program id.
        id: u32,
        /// The cause.
        source: io::Error,
    },
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Programs beyond this many on one cgroup are not ours to juggle.
const MAX_ATTACHED: usize = 64;
const LOG_SIZE: usize = 64 * 1024;

/// `union bpf_attr` for BPF_PROG_LOAD (prefix; the kernel zero-checks the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH / BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with `attr` as its attribute union.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is an exclusive reference to a #[repr(C)] prefix of `union bpf_attr`
    // for `cmd`, valid for `size_of::<T>()` bytes for the whole call; every pointer stored
    // in it (insns, license, log, ids) points at a buffer the caller keeps alive across
    // this call and sized as the attr says.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wraps a descriptor returned by bpf(2).
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: bpf(2) just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // A valid descriptor is never negative.
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

fn load(insns: &[BpfInsn]) -> Result<OwnedFd, BpfError> {
    let license = c"Apache";
    let mut log = vec![0u8; LOG_SIZE];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        return owned(fd).map_err(|source| BpfError::Load {
            source,
            log: String::new(),
        });
    }
    // Load again with the verifier log on, to say why.
    attr.log_level = 1;
    attr.log_size = u32::try_from(log.len()).unwrap_or(0);
    attr.log_buf = log.as_mut_ptr() as u64;
    let r = bpf(BPF_PROG_LOAD, &mut attr);
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).trim().to_owned();
    match r {
        Ok(fd) => owned(fd).map_err(|source| BpfError::Load { source, log: text }),
        Err(source) => Err(BpfError::Load { source, log: text }),
    }
}

fn query(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, BpfError> {
    let mut ids = [0u32; MAX_ATTACHED];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: u32::try_from(ids.len()).unwrap_or(0),
        ..QueryAttr::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(BpfError::Query)?;
    let n = usize::try_from(attr.prog_cnt).unwrap_or(0).min(ids.len());
    Ok(ids[..n].to_vec())
}

fn attach(cmd: libc::c_int, cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: if cmd == BPF_PROG_ATTACH {
            BPF_F_ALLOW_MULTI
        } else {
            0
        },
        ..AttachAttr::default()
    };
    bpf(cmd, &mut attr).map(|_| ())
}

/// Loads `insns` as a device program, attaches it to the cgroup `cgroup` (an open
/// directory) with BPF_F_ALLOW_MULTI, then detaches the programs attached before, so an
/// `update` replaces the filter. While both are attached both must allow: never wider.
pub(crate) fn replace_device_program(
    cgroup: BorrowedFd<'_>,
    insns: &[BpfInsn],
) -> Result<(), BpfError> {
    let prog = load(insns)?;
    let old = query(cgroup)?;
    attach(BPF_PROG_ATTACH, cgroup, std::os::fd::AsFd::as_fd(&prog)).map_err(BpfError::Attach)?;
    for id in old {
        let mut attr = GetFdAttr {
            prog_id: id,
            ..GetFdAttr::default()
        };
        let old_fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
            .and_then(owned)
            .map_err(|source| BpfError::Detach { id, source })?;
        attach(BPF_PROG_DETACH, cgroup, std::os::fd::AsFd::as_fd(&old_fd))
            .map_err(|source| BpfError::Detach { id, source })?;
    }
    Ok(())
}
