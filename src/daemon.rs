//! Running in the background: the log sink (stderr, or a file once one is chosen), the fork
//! whose parent waits on a pipe for the child's word that the mount is ready (or why not), and
//! systemd's readiness notification.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use s3mount::s3::private;

/// Where log lines go: stderr until a file is chosen (daemon mode moves them to a file so the
/// caller's terminal or pipe is released).
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

pub struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = LOG_FILE.lock().unwrap_or_else(|p| p.into_inner());
        match f.as_mut() {
            Some(file) => file.write(buf),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Append to `path`; created private to this user (log lines name objects). An existing file
/// keeps its mode: the operator chose it.
pub fn set_log_file(path: &Path) -> Result<(), String> {
    let file = private::open_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("log file {}: {e}", path.display()))?;
    *LOG_FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
    Ok(())
}

/// Tell systemd (Type=notify units) about our state; a no-op elsewhere.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::warn!("sd_notify {state}: {e}");
    }
}

/// Fork: the parent waits for the child's word on a pipe and exits with it; the child, in `/`
/// from then on, returns the pipe's write end.
pub fn daemonize() -> Result<std::fs::File, String> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: no other threads exist yet (logging and clients start none before this point).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid > 0 {
        // Parent: wait for "ok" or an error message.
        // SAFETY: closing our copy of the write end; reading from a valid fd.
        unsafe { libc::close(fds[1]) };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            // SAFETY: chunk is valid for 512 bytes.
            let n = unsafe { libc::read(fds[0], chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n as usize]);
        }
        let msg = String::from_utf8_lossy(&buf);
        if msg == "ok" {
            std::process::exit(0);
        }
        let msg = if msg.is_empty() {
            "the mount process exited before the mount was ready".into()
        } else {
            msg.into_owned()
        };
        eprintln!("s3mount: {msg}");
        std::process::exit(1);
    }
    // Child: new session, stdin from /dev/null; stderr stays (logs) unless redirected. It
    // leaves the caller's working directory, which it would otherwise keep busy (that file
    // system could not be unmounted while the bucket is mounted); the caller made every path
    // it uses absolute.
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
        if libc::chdir(c"/".as_ptr()) != 0 {
            log::warn!(
                "cannot leave the working directory: {}",
                std::io::Error::last_os_error()
            );
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    // SAFETY: fds[1] is our pipe's write end, owned from here on by the File.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) })
}

/// Tell the waiting parent (once) whether the mount is ready.
pub fn report_ready(ready: &mut Option<std::fs::File>, result: Result<(), &String>) {
    let Some(mut f) = ready.take() else { return };
    let msg = match result {
        Ok(()) => "ok".to_string(),
        Err(m) => m.clone(),
    };
    let _ = f.write_all(msg.as_bytes());
}
