//! Errors of the server library itself: configuration, model repository and
//! socket problems. Per-request errors live in [`crate::request_error`].

use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong while configuring or running the server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A model configuration file is invalid; names the file and the field.
    #[error("{}: field `{field}`: {reason}", file.display())]
    Config {
        /// The config.toml involved.
        file: PathBuf,
        /// The offending field (or `-` when the file as a whole is bad).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Which endpoint (http or grpc).
        what: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A Unix domain socket could not be opened.
    #[error("cannot listen on the Unix socket {} ({what}): {reason}", path.display())]
    BindUnix {
        /// The socket file asked for.
        path: PathBuf,
        /// Which endpoint (http or grpc).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An endpoint failed while serving.
    #[error("{what} server failed: {reason}")]
    Serve {
        /// Which endpoint (http or grpc).
        what: &'static str,
        /// What happened.
        reason: String,
    },
}
