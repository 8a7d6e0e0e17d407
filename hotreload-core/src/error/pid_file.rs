//! What is wrong with a pid file, each problem with what to do about it.

use std::fmt;
use std::path::PathBuf;

/// What is wrong with a pid file. Each message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PidFileProblem {
    /// The file does not exist.
    Missing,
    /// The file is empty (nginx truncates then writes it, so this can be a moment in a write).
    Empty,
    /// The file holds only white space.
    Whitespace,
    /// The file is a symbolic link; we never follow one (it could aim signals anywhere).
    Symlink,
    /// The path is not a regular file.
    NotRegularFile {
        /// What it is instead ("directory", "FIFO", ...).
        kind: &'static str,
    },
    /// The file is larger than any pid file could be.
    TooLong {
        /// Its size in bytes.
        len: u64,
    },
    /// More than one line (or text after the trailing newline).
    MultipleLines,
    /// The number carries a sign (`+5`, `-5`).
    Signed {
        /// The content, escaped.
        content: String,
    },
    /// Not a decimal number (letters, spaces, `\r`, ...).
    NotANumber {
        /// The content, escaped.
        content: String,
    },
    /// 0 or 1: never the pid of a server master.
    Reserved {
        /// The number read.
        value: u64,
    },
    /// Greater than the kernel's `pid_max`.
    TooLarge {
        /// The number read (as text: it may not fit any integer).
        value: String,
        /// `/proc/sys/kernel/pid_max`.
        pid_max: u64,
    },
    /// Running as root, the file or its directory can be written by someone who is not root,
    /// who could therefore aim our signals at any process.
    WritableByOthers {
        /// The file or directory at fault.
        what: PathBuf,
        /// Who can write it, e.g. "user 1000 (its owner)" or "every user".
        who: String,
    },
}

impl PidFileProblem {
    /// True when the problem can be a moment in the server's own write of the file
    /// (it truncates, then writes), so reading again shortly may succeed.
    pub fn may_be_transient(&self) -> bool {
        matches!(self, PidFileProblem::Empty | PidFileProblem::Missing)
    }
}

impl fmt::Display for PidFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileProblem::Missing => f.write_str(
                "it does not exist: is the server running, and is this the path of its `pid` directive?",
            ),
            PidFileProblem::Empty => f.write_str(
                "it is empty: the server may be writing it right now; try again, or check that the \
                 server is running",
            ),
            PidFileProblem::Whitespace => f.write_str(
                "it holds only white space, not a process id: check which program writes it",
            ),
            PidFileProblem::Symlink => f.write_str(
                "it is a symbolic link, which is never followed (it could aim signals at any \
                 process): name the real file",
            ),
            PidFileProblem::NotRegularFile { kind } => {
                write!(f, "it is a {kind}, not a regular file: name the file the server writes")
            }
            PidFileProblem::TooLong { len } => write!(
                f,
                "it is {len} bytes long, far longer than one process id: is this really a pid file?"
            ),
            PidFileProblem::MultipleLines => f.write_str(
                "it holds more than one line; a pid file holds exactly one process id and at most \
                 one trailing newline",
            ),
            PidFileProblem::Signed { content } => write!(
                f,
                "it holds `{content}`: a process id has no sign; check which program writes it"
            ),
            PidFileProblem::NotANumber { content } => write!(
                f,
                "it holds `{content}`, not a decimal process id (nothing but digits and one \
                 optional trailing newline is accepted)"
            ),
            PidFileProblem::Reserved { value } => write!(
                f,
                "it holds {value}, which is never the pid of a server master (0 is no process, 1 \
                 is init): the file is stale or was written by something else"
            ),
            PidFileProblem::TooLarge { value, pid_max } => write!(
                f,
                "it holds {value}, which is above the kernel's pid_max ({pid_max}): the file is \
                 corrupt or not a pid file"
            ),
            PidFileProblem::WritableByOthers { what, who } => write!(
                f,
                "`{}` can be written by {who}, who could aim root's signals at any process: make \
                 it owned by root and not writable by group or others (chown root; chmod go-w), \
                 or run hotreload as the server's user",
                what.display()
            ),
        }
    }
}
