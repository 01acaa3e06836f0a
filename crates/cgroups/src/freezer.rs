//! Pause and resume: v1 `freezer.state`, v2 `cgroup.freeze` and `cgroup.events`.

use std::thread::sleep;
use std::time::Duration;

use crate::cgroup::Cgroup;
use crate::cgroupfs::CgroupDir;
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::hierarchy::Flavor;

/// Polls before giving up on a freeze (~10 s at 10 ms each).
const POLLS: u32 = 1000;
const POLL: Duration = Duration::from_millis(10);

/// The freezer files of one flavor: where to write, what, and how to see it took.
struct FreezerFiles {
    control: &'static str,
    frozen: &'static str,
    thawed: &'static str,
}

const V1: FreezerFiles = FreezerFiles {
    control: "freezer.state",
    frozen: "FROZEN",
    thawed: "THAWED",
};
const V2: FreezerFiles = FreezerFiles {
    control: "cgroup.freeze",
    frozen: "1",
    thawed: "0",
};

impl Cgroup {
    fn freezer(&self) -> Result<(CgroupDir, &'static FreezerFiles), CgroupError> {
        let d = self
            .locate(Ctrl::Freezer)
            .ok_or(CgroupError::ControllerMissing {
                controller: "freezer".to_owned(),
                file: "freezer.state".to_owned(),
            })?;
        let files = match d.flavor {
            Flavor::V1 => &V1,
            Flavor::V2 => &V2,
        };
        Ok((CgroupDir::open(&d.path)?, files))
    }

    /// Freezes every process and waits until the kernel reports them frozen. On timeout
    /// it thaws again and fails.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let (dir, f) = self.freezer()?;
        dir.write(f.control, f.frozen)?;
        for i in 0..POLLS {
            if frozen(&dir, f)? {
                return Ok(());
            }
            // v1 can stay FREEZING while tasks are in uninterruptible sleep; asking again
            // retries them.
            if f.control == V1.control && i % 10 == 9 {
                dir.write(f.control, f.frozen)?;
            }
            sleep(POLL);
        }
        let _ = dir.write(f.control, f.thawed);
        Err(CgroupError::FreezeTimeout {
            path: dir.path().join(f.control),
            state: f.frozen,
        })
    }

    /// Thaws every process.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        let (dir, f) = self.freezer()?;
        dir.write(f.control, f.thawed)?;
        for _ in 0..POLLS {
            if !frozen(&dir, f)? {
                return Ok(());
            }
            sleep(POLL);
        }
        Err(CgroupError::FreezeTimeout {
            path: dir.path().join(f.control),
            state: f.thawed,
        })
    }

    /// Whether the kernel reports the cgroup frozen (not merely freezing).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        let (dir, f) = self.freezer()?;
        frozen(&dir, f)
    }
}

fn frozen(dir: &CgroupDir, f: &FreezerFiles) -> Result<bool, CgroupError> {
    if f.control == V1.control {
        return Ok(dir.read(f.control)?.trim() == V1.frozen);
    }
    // v2: cgroup.freeze is the request, `frozen` in cgroup.events the result.
    let events = dir.read("cgroup.events")?;
    Ok(events.lines().any(|l| l.trim() == "frozen 1"))
}
