//! Unix domain socket endpoints: the same HTTP and gRPC services on a socket
//! file, for clients on the same host (`grpc.insecure_channel("unix:PATH")`,
//! tritonclient's gRPC client with `url="unix:PATH"`, `curl --unix-socket`).
//! A socket file left behind by a server that is gone is replaced; one that
//! a live server still answers on, or a path that is not a socket, is an
//! error. The server removes its socket files when it stops.

use crate::error::ServerError;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// A bound Unix socket and the path of its file (removed by the server
/// when it stops, [`remove`]).
#[derive(Debug)]
pub(crate) struct UnixEndpoint {
    pub listener: UnixListener,
    pub path: PathBuf,
}

fn bind_error(path: &Path, what: &'static str, reason: impl ToString) -> ServerError {
    ServerError::BindUnix {
        path: path.to_path_buf(),
        what,
        reason: reason.to_string(),
    }
}

/// Binds `path` for endpoint `what`, replacing a stale socket file.
pub(crate) async fn bind(path: &Path, what: &'static str) -> Result<UnixEndpoint, ServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(bind_error(
                    path,
                    what,
                    "a server is already listening on this socket",
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| bind_error(path, what, format!("removing the stale socket: {e}")))?;
        }
        Ok(_) => {
            return Err(bind_error(
                path,
                what,
                "the path exists and is not a socket (not replaced)",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(path, what, e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| bind_error(path, what, e))?;
    Ok(UnixEndpoint {
        listener,
        path: path.to_path_buf(),
    })
}

/// Removes the socket file of a stopped endpoint (a missing file is fine).
pub(crate) fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "removing the socket file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binding_replaces_a_stale_socket_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reef.sock");
        // A stale socket: bound, then the listener dropped (the file stays).
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let live = bind(&path, "grpc").await.expect("stale socket replaced");
        let err = bind(&path, "grpc").await.expect_err("live socket refused");
        assert!(err.to_string().contains("already listening"), "{err}");
        assert!(err.to_string().contains("reef.sock"), "{err}");
        drop(live);
        remove(&path);
        assert!(!path.exists());
        remove(&path);
    }

    #[tokio::test]
    async fn binding_refuses_a_path_that_is_not_a_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "keep me").expect("write");
        let err = bind(&path, "http").await.expect_err("refused");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "keep me");
        let missing = dir.path().join("no/such/dir/reef.sock");
        let err = bind(&missing, "http").await.expect_err("no folder");
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
