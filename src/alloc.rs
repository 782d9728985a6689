//! The allocator, and the two settings it needs.
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
//! second, 494 s purging at once; NOTES.md, issue 21 session 10), so the setting stays —
//! but for a protocol whose registry entry asks otherwise ([`qmpc_protocols::registry::
//! Spec::purge_after_ms`]: `shamir`, whose kept memory took EfficientNet-B0 to 4.66 GB
//! against a live peak near 2; 3.18 GB handing it back after a second, session 15).
//!
//! mimalloc also asks the kernel for transparent huge pages on its arenas
//! (`madvise(MADV_HUGEPAGE)`), and a first touch then faults in and zeroes 2 MiB at once.
//! Where the memory behind a guest's free 2 MiB blocks has been handed back to its host
//! (a virtual machine's free page reporting, as on the machines this project is measured
//! on), every such fault is also a fault in the host: ResNet-18 under `rep3` spent 23.5 s
//! of system time and 15.9 s of wall in one process with huge pages, 1.2 s and 4.9 s
//! without (1.6 against 1.7 GB peak RSS; NOTES.md, issue 21 session 12). The GEMMs' gain
//! from fewer TLB misses is a few per cent where it exists, so huge pages stay off.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings this process runs with, read from the environment once, as the
/// process starts: how long freed memory waits before it goes back to the OS (`-1`:
/// never; the protocol's [`qmpc_protocols::registry::Spec::purge_after_ms`] where the
/// command runs one), and whether its arenas may take transparent huge pages (`0`: no;
/// mimalloc then also turns them off for the process with `prctl`).
fn settings(purge_after_ms: Option<u32>) -> [(&'static str, String); 2] {
    [
        (
            "MIMALLOC_PURGE_DELAY",
            purge_after_ms.map_or("-1".to_string(), |ms| ms.to_string()),
        ),
        ("MIMALLOC_ALLOW_THP", "0".to_string()),
    ]
}

/// Restart this process with [`settings`] set, each unless the user set it already (a
/// value the user set is kept): `exec`, the same process, no child. Returns only where
/// every setting is in place, or where the restart is impossible (then the run goes on as
/// it is).
pub fn configure(purge_after_ms: Option<u32>) {
    use std::os::unix::process::CommandExt;
    let missing: Vec<_> = settings(purge_after_ms)
        .into_iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut restart = std::process::Command::new(exe);
    restart.args(std::env::args_os().skip(1));
    for (name, value) in missing {
        restart.env(name, value);
    }
    // `exec` returns only on failure; the run then goes on with the defaults.
    let _ = restart.exec();
}
