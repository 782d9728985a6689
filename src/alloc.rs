//! The allocator, and the one setting it needs.
//!
//! Secure runs allocate and free share planes of tens of MB per instruction; glibc's
//! allocator maps and unmaps each one, mimalloc keeps them — but by default it hands
//! memory freed for a second back to the OS, and the next training step faults it in
//! again and has the kernel zero it: LeNet's four `rep3` steps of 128 took 97k page
//! faults (2.3k of them huge pages) and 7.35 s, against 1.7k (0.7k) and 6.74 s without
//! purging (means of three runs, 2 cores). On small runs peak memory is the same either
//! way. On ImageNet-size ones it is not: memory kept but fragmented across threads lets
//! RSS climb past the live peak (ResNet-18 under `mal-rep3`: 9.6 GB against 6.8 live;
//! `shamir`, until its daBits stopped copying their draws: 6.2 against 3.6) — yet purging costs those runs far more than it saves
//! small ones (`mal-rep3` 142 s online never purging, 310 s with mimalloc's default
//! second, 494 s purging at once; NOTES.md, issue 21 session 10), so the setting stays.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's setting for how long freed memory waits before it goes back to the OS
/// (`-1`: never). mimalloc reads its settings from the environment once, as the process
/// starts, so the command sets it and starts itself again (`exec`: the same process, no
/// child). A value the user set is kept.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Restart this process with [`PURGE_DELAY`] set, unless it is set already. Returns only
/// where it is set, or where the restart is impossible (then the run goes on as it is).
pub fn keep_freed_memory() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only on failure; the run then goes on with the default.
    let _ = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "-1")
        .exec();
}
