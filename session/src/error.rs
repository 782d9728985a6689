//! The library's errors: one line each, of the kind that says whose move it was (the
//! Python bindings raise one exception class per kind).

/// What went wrong. Every message is one line naming the file, input, node, party or
/// setting; it is what `qmpc` prints after `error:`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model: an ONNX file the compiler refuses (every unsupported op by node), a
    /// program or weights file that does not load or verify.
    #[error("{0}")]
    Model(String),
    /// The caller's data: an input of the wrong shape, type or range, a missing input, a
    /// data file that cannot be read.
    #[error("{0}")]
    Input(String),
    /// The session's set-up: an unknown protocol, a party count or a role out of range, a
    /// config or key that does not load, a flag that does not fit the role.
    #[error("{0}")]
    Setup(String),
    /// A party or the dealer failed while the session ran: a peer that disconnected,
    /// stalled, was refused or lied, a check that failed, a timeout.
    #[error("{0}")]
    Run(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Classifies an internal error (an `anyhow` chain, or any error) as one [`Error`] kind,
/// keeping its whole chain on one line.
pub(crate) trait Kind<T> {
    fn or_model(self) -> Result<T>;
    fn or_input(self) -> Result<T>;
    fn or_setup(self) -> Result<T>;
    fn or_run(self) -> Result<T>;
}

fn line(e: anyhow::Error) -> String {
    format!("{e:#}")
}

impl<T, E: Into<anyhow::Error>> Kind<T> for std::result::Result<T, E> {
    fn or_model(self) -> Result<T> {
        self.map_err(|e| Error::Model(line(e.into())))
    }
    fn or_input(self) -> Result<T> {
        self.map_err(|e| Error::Input(line(e.into())))
    }
    fn or_setup(self) -> Result<T> {
        self.map_err(|e| Error::Setup(line(e.into())))
    }
    fn or_run(self) -> Result<T> {
        self.map_err(|e| Error::Run(line(e.into())))
    }
}
