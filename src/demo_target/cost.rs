//! The real per-request costs: CPU time burned on the calling thread, measured with that
//! thread's own CPU clock, and memory that is mapped, written page by page and unmapped again.
//!
//! Counting the thread's CPU time rather than wall time keeps the cost exact when the process
//! is throttled by a container CPU limit or shares cores with other threads: a request costs
//! the configured CPU seconds, however long that takes in wall time.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

/// The calling thread's CPU time (user + system), or `None` if the clock is unavailable.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// A point on the thread's CPU clock (falling back to wall time if that clock is missing), from
/// which [`burn_until`] measures.
#[derive(Debug, Clone, Copy)]
pub enum CpuMark {
    Thread(Duration),
    Wall(Instant),
}

impl CpuMark {
    /// Marks now.
    pub fn now() -> Self {
        match thread_cpu_time() {
            Some(t) => CpuMark::Thread(t),
            None => CpuMark::Wall(Instant::now()),
        }
    }

    /// CPU time this thread used since the mark.
    pub fn elapsed(&self) -> Duration {
        match self {
            CpuMark::Thread(start) => thread_cpu_time().unwrap_or(*start).saturating_sub(*start),
            CpuMark::Wall(start) => start.elapsed(),
        }
    }
}

/// Hash rounds between two reads of the CPU clock: about 10 µs of work, so the overshoot past
/// the budget is tiny and reading the clock (a system call) costs about 1 % of the burn.
const ROUNDS_PER_CHECK: u64 = 4096;

/// Does real arithmetic (an FNV-style hash chain) until this thread has used `budget` of CPU
/// time since `mark`. Returns the hash so the work cannot be optimised away.
pub fn burn_until(mark: CpuMark, budget: Duration) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while mark.elapsed() < budget {
        for i in 0..ROUNDS_PER_CHECK {
            h = (h ^ i).wrapping_mul(0x0000_0100_0000_01b3);
            h ^= h >> 29;
        }
        h = black_box(h);
    }
    h
}

/// Memory that is really resident: an anonymous mapping with every page written, unmapped on
/// drop.
///
/// It uses `mmap` directly rather than the allocator because glibc raises its mmap threshold
/// after large frees and would then keep freed blocks in its heap; with a direct mapping RSS
/// falls as soon as a request ends, so RSS tracks the requests in flight.
pub struct TouchedMemory {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by this value and only unmapped in `drop`.
unsafe impl Send for TouchedMemory {}
// SAFETY: no method reads or writes through `ptr` after construction.
unsafe impl Sync for TouchedMemory {}

impl TouchedMemory {
    /// Maps `len` bytes and writes one byte in every page so each page is backed by its own
    /// physical memory (an untouched or read-only page would share the zero page).
    pub fn allocate(len: u64) -> io::Result<Self> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "size exceeds usize"))?;
        if len == 0 {
            return Ok(TouchedMemory {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mem = TouchedMemory { ptr, len };
        let page = page_size();
        let base = ptr.cast::<u8>();
        let mut off = 0;
        while off < len {
            // SAFETY: `off < len`, inside the mapping we just created with write permission.
            unsafe { base.add(off).write_volatile((off / page) as u8 | 1) };
            off += page;
        }
        Ok(mem)
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for TouchedMemory {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr`/`len` describe a mapping this value created and nobody else uses.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

impl std::fmt::Debug for TouchedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TouchedMemory")
            .field("len", &self.len)
            .finish()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// One request's memory, mapped and touched when the request is admitted and held until its
/// response is ready, with the CPU time the touching took (which counts towards the request's
/// CPU budget).
#[derive(Debug)]
pub struct Admitted {
    pub memory: TouchedMemory,
    pub touch_cpu: Duration,
}

/// Maps and touches `mem` bytes on the calling thread and measures that thread's CPU time for
/// it, so the later CPU burn can take only the rest of the request's budget.
pub fn admit(mem: u64) -> io::Result<Admitted> {
    let mark = CpuMark::now();
    let memory = TouchedMemory::allocate(mem)?;
    Ok(Admitted {
        memory,
        touch_cpu: mark.elapsed(),
    })
}

/// The CPU burn of a request whose memory touching already used `touched` of its `cpu`: burns
/// the rest, so the CPU per request is `cpu` whatever the memory size, as long as touching takes
/// less.
pub fn burn_rest(cpu: Duration, touched: Duration) -> u64 {
    burn_until(CpuMark::now(), cpu.saturating_sub(touched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_uses_the_budget_in_thread_cpu_time() {
        let mark = CpuMark::now();
        burn_until(mark, Duration::from_millis(30));
        let used = mark.elapsed();
        assert!(used >= Duration::from_millis(30), "{used:?}");
        assert!(used < Duration::from_millis(33), "{used:?}");
    }

    /// Residency of each page of a mapping, from mincore(2): exact for this mapping, whatever
    /// other test threads allocate meanwhile (process RSS is checked by the integration tests).
    fn resident_pages(ptr: *mut libc::c_void, len: usize) -> Option<usize> {
        let mut vec = vec![0u8; len.div_ceil(page_size())];
        // SAFETY: `vec` has one byte per page of the range, as mincore requires.
        let rc = unsafe { libc::mincore(ptr, len, vec.as_mut_ptr()) };
        (rc == 0).then(|| vec.iter().filter(|&&b| b & 1 == 1).count())
    }

    #[test]
    fn touched_memory_is_resident_and_unmapped_on_drop() {
        let len = 16 << 20;
        let mem = TouchedMemory::allocate(len as u64).unwrap();
        let (ptr, pages) = (mem.ptr, len / page_size());
        assert_eq!(mem.len(), len);
        assert_eq!(resident_pages(ptr, len), Some(pages));
        drop(mem);
        // mincore fails with ENOMEM on an unmapped range: the memory went back to the OS.
        assert_eq!(resident_pages(ptr, len), None);
        assert!(TouchedMemory::allocate(0).unwrap().is_empty());
    }

    #[test]
    fn admitting_measures_the_touch_and_the_burn_takes_only_the_rest() {
        let admitted = admit(32 << 20).unwrap();
        assert_eq!(admitted.memory.len(), 32 << 20);
        // 8192 page faults cost CPU: measured, not zero.
        assert!(admitted.touch_cpu > Duration::ZERO, "{admitted:?}");
        let budget = admitted.touch_cpu + Duration::from_millis(20);
        let mark = CpuMark::now();
        burn_rest(budget, admitted.touch_cpu);
        let used = mark.elapsed();
        assert!(used >= Duration::from_millis(20), "{used:?}");
        assert!(used < Duration::from_millis(23), "{used:?}");
        // A touch longer than the budget leaves nothing to burn.
        let mark = CpuMark::now();
        burn_rest(Duration::from_millis(1), Duration::from_millis(5));
        assert!(
            mark.elapsed() < Duration::from_millis(1),
            "{:?}",
            mark.elapsed()
        );
    }
}
