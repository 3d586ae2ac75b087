//! Node processes: spawning them detached, telling their state, and signalling them.
//!
//! A node is spawned in a process group of its own, so that a Ctrl-C in the terminal that ran
//! `ringdb cluster start` does not reach it, with stdin closed and stdout and stderr appended to
//! its `node.log`. The CLI exits after `start`; the nodes keep running and later commands find
//! them through the pids in the manifest.
//!
//! The state of a pid is read from `/proc/PID/stat` rather than with `kill(pid, 0)`: a node killed
//! while its parent still runs (a test that uses the library in-process) is a zombie until
//! waited for, and `kill(pid, 0)` succeeds on zombies. `/proc` also says whether the process is
//! stopped (paused) and when it started, which tells our process from a later one that reused
//! the pid. Where there is no `/proc` the state falls back to `kill(pid, 0)`.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What a node's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessState {
    /// Never started, or stopped gracefully.
    Stopped,
    /// Alive and scheduled.
    Running,
    /// Alive but stopped by SIGSTOP (`ringdb cluster pause`).
    Paused,
    /// Started, and gone without a graceful stop: killed or crashed.
    Dead,
}

impl ProcessState {
    /// True while the process exists (running or paused).
    pub fn is_alive(self) -> bool {
        matches!(self, ProcessState::Running | ProcessState::Paused)
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessState::Stopped => "stopped",
            ProcessState::Running => "running",
            ProcessState::Paused => "paused",
            ProcessState::Dead => "dead",
        })
    }
}

/// The scheduler state letter and start time of a live pid, from `/proc/PID/stat`.
/// `None` when the pid does not exist (or there is no `/proc`).
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 of the whole line (starttime) is index 19 after the comm.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// True when this system has `/proc` to read process states from.
fn have_proc() -> bool {
    Path::new("/proc/self/stat").exists()
}

/// The state of a recorded pid. `expected_start` is the start time recorded at spawn; a live pid
/// with another start time (or with none recorded) is someone else's process, so ours is dead.
pub fn state_of_pid(pid: u32, expected_start: Option<u64>) -> ProcessState {
    if !have_proc() {
        return if signal(pid, 0).is_ok() {
            ProcessState::Running
        } else {
            ProcessState::Dead
        };
    }
    match proc_stat(pid) {
        None => ProcessState::Dead,
        // Without a recorded start time the pid cannot be told from a reused one: never treat a
        // stranger as our node (and never signal it).
        Some((_, start)) if expected_start != Some(start) => ProcessState::Dead,
        Some(('Z' | 'X' | 'x', _)) => ProcessState::Dead,
        Some(('T' | 't', _)) => ProcessState::Paused,
        Some(_) => ProcessState::Running,
    }
}

/// Sends `sig` to `pid` (0 only checks that it exists).
pub fn signal(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    if pid <= 0 {
        // Never signal a process group or every process by accident.
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "refusing to signal pid 0 or a negative pid",
        ));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Spawns `binary node --config CONFIG` for a node: in its own process group, working directory
/// `node_dir`, stdin closed, stdout and stderr appended to `log_path` after a banner line. The
/// node sees no `RINGDB_*` variables of ours: its config file is its whole configuration.
pub fn spawn_node(
    binary: &Path,
    config: &Path,
    node_dir: &Path,
    log_path: &Path,
    banner: &str,
) -> std::io::Result<Child> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    writeln!(log, "{banner}")?;
    let log_err = log.try_clone()?;
    let mut cmd = Command::new(binary);
    cmd.arg("node")
        .arg("--config")
        .arg(config)
        .current_dir(node_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RINGDB_") {
            cmd.env_remove(&key);
        }
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(pid: u32, want: ProcessState, start: Option<u64>) -> ProcessState {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = state_of_pid(pid, start);
            if s == want || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn states_of_a_real_process_including_the_zombie() {
        if !have_proc() {
            return;
        }
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = proc_stat(pid).map(|(_, s)| s);
        assert!(start.is_some());
        assert_eq!(state_of_pid(pid, start), ProcessState::Running);
        signal(pid, libc::SIGSTOP).unwrap();
        assert_eq!(
            wait_for(pid, ProcessState::Paused, start),
            ProcessState::Paused
        );
        signal(pid, libc::SIGCONT).unwrap();
        assert_eq!(
            wait_for(pid, ProcessState::Running, start),
            ProcessState::Running
        );
        // A different start time means the pid is someone else's now.
        assert_eq!(state_of_pid(pid, start.map(|s| s + 1)), ProcessState::Dead);
        assert_eq!(state_of_pid(pid, None), ProcessState::Dead);
        signal(pid, libc::SIGKILL).unwrap();
        // Not yet waited for: a zombie, which kill(pid, 0) would still call alive.
        assert_eq!(wait_for(pid, ProcessState::Dead, start), ProcessState::Dead);
        assert!(signal(pid, 0).is_ok(), "the zombie still has its pid");
        child.wait().unwrap();
        assert_eq!(state_of_pid(pid, start), ProcessState::Dead);
    }

    #[test]
    fn refuses_pid_zero() {
        assert!(signal(0, libc::SIGTERM).is_err());
    }

    #[test]
    fn spawned_nodes_get_their_own_group_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        // `sh` stands in for ringdb: it ignores `node --config X` and prints its process group.
        let script = dir.path().join("fake-ringdb");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"args: $*\"; set -- $(cat /proc/$$/stat); echo $5\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut child = spawn_node(
            &script,
            Path::new("cfg.yaml"),
            dir.path(),
            &log,
            "=== banner ===",
        )
        .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.starts_with("=== banner ===\nargs: node --config cfg.yaml"),
            "{text}"
        );
        if let Some(pgid) = text.lines().nth(2) {
            assert_eq!(pgid.trim(), pid.to_string(), "{text}");
        }
    }
}
