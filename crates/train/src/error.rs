//! The trainer's one error type. Every variant names what the user must fix: the flag, or
//! the file and line of the data.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("--{flag}: {message}")]
    Flag { flag: &'static str, message: String },

    #[error("{}:{line}: {message}", file.display())]
    Data { file: PathBuf, line: usize, message: String },

    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },

    #[error(transparent)]
    Engine(#[from] luodi_engine::EngineError),
}

impl TrainError {
    pub fn flag(flag: &'static str, message: impl Into<String>) -> Self {
        TrainError::Flag { flag, message: message.into() }
    }

    pub fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        TrainError::File { path: path.to_path_buf(), message: message.to_string() }
    }
}

/// candle's tensor errors reach the user as the engine reports them.
impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        luodi_engine::EngineError::from(e).into()
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
