//! `Signal` (our own vocabulary type, so no `nix`/`libc` type leaks into the API)
//! and `SignalSet` (the masks of `/proc/<pid>/status`).
//!
//! Numbers are Linux's (identical on x86_64 and aarch64); they come from `libc`
//! so a port to another architecture picks up its own values.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

macro_rules! signals {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $num:expr; )*) => {
        /// A signal that can be sent to a process.
        ///
        /// Parses `QUIT`, `SIGQUIT`, `quit` and `3`; displays as `SIGQUIT`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Signal {
            $( $(#[$doc])* $variant, )*
        }

        impl Signal {
            /// Every signal this type knows, in a fixed order.
            pub const ALL: &'static [Signal] = &[ $( Signal::$variant, )* ];

            /// The signal number on this platform.
            pub fn number(self) -> i32 {
                match self { $( Signal::$variant => $num, )* }
            }

            /// The name without the `SIG` prefix, e.g. `"QUIT"`.
            pub fn name(self) -> &'static str {
                match self { $( Signal::$variant => $name, )* }
            }
        }
    };
}

signals! {
    /// Hang-up; nginx: reload configuration (or, during an upgrade, start workers again).
    Hup = "HUP", libc::SIGHUP;
    /// Interrupt; nginx: fast shutdown.
    Int = "INT", libc::SIGINT;
    /// Quit; nginx: graceful shutdown.
    Quit = "QUIT", libc::SIGQUIT;
    /// Abort.
    Abrt = "ABRT", libc::SIGABRT;
    /// Kill (cannot be caught).
    Kill = "KILL", libc::SIGKILL;
    /// User signal 1; nginx: reopen log files.
    Usr1 = "USR1", libc::SIGUSR1;
    /// Segmentation fault.
    Segv = "SEGV", libc::SIGSEGV;
    /// User signal 2; nginx: start a new master from the executable on disk.
    Usr2 = "USR2", libc::SIGUSR2;
    /// Broken pipe.
    Pipe = "PIPE", libc::SIGPIPE;
    /// Alarm clock.
    Alrm = "ALRM", libc::SIGALRM;
    /// Terminate; nginx: fast shutdown (gunicorn: graceful).
    Term = "TERM", libc::SIGTERM;
    /// Child status changed.
    Chld = "CHLD", libc::SIGCHLD;
    /// Continue a stopped process.
    Cont = "CONT", libc::SIGCONT;
    /// Stop (cannot be caught).
    Stop = "STOP", libc::SIGSTOP;
    /// Terminal stop.
    Tstp = "TSTP", libc::SIGTSTP;
    /// Terminal input for a background process.
    Ttin = "TTIN", libc::SIGTTIN;
    /// Terminal output from a background process.
    Ttou = "TTOU", libc::SIGTTOU;
    /// Window size change; nginx: gracefully stop the workers, keep the master.
    Winch = "WINCH", libc::SIGWINCH;
}

impl Signal {
    /// The signal with this number, if this type knows it.
    pub fn from_number(n: i32) -> Option<Signal> {
        Signal::ALL.iter().copied().find(|s| s.number() == n)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl FromStr for Signal {
    type Err = ParseError;

    /// Accepts `QUIT`, `SIGQUIT`, any letter case, and the number (`3`).
    fn from_str(s: &str) -> Result<Signal, ParseError> {
        let unknown = || ParseError::UnknownSignal {
            value: s.to_string(),
        };
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n: i32 = s.parse().map_err(|_| unknown())?;
            return Signal::from_number(n).ok_or_else(unknown);
        }
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL
            .iter()
            .copied()
            .find(|sig| sig.name() == bare)
            .ok_or_else(unknown)
    }
}

/// A set of signals, as in the `SigCgt`/`SigIgn`/`SigBlk` masks of `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SignalSet(u64);

impl SignalSet {
    /// The empty set.
    pub const EMPTY: SignalSet = SignalSet(0);

    /// Makes a set from a raw mask (bit n-1 stands for signal n).
    pub fn from_bits(bits: u64) -> SignalSet {
        SignalSet(bits)
    }

    /// Parses the hexadecimal mask of a `/proc/<pid>/status` line (e.g. `0000000000004a02`).
    pub fn from_hex(hex: &str) -> Option<SignalSet> {
        let hex = hex.trim();
        if hex.is_empty() {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(SignalSet)
    }

    /// The raw mask.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Whether the set holds `signal`.
    pub fn contains(self, signal: Signal) -> bool {
        let n = signal.number();
        (1..=64).contains(&n) && self.0 & (1u64 << (n - 1)) != 0
    }

    /// Adds `signal` to the set.
    pub fn insert(&mut self, signal: Signal) {
        let n = signal.number();
        if (1..=64).contains(&n) {
            self.0 |= 1u64 << (n - 1);
        }
    }

    /// The known signals in the set.
    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Signal> for SignalSet {
    fn from_iter<I: IntoIterator<Item = Signal>>(iter: I) -> SignalSet {
        let mut set = SignalSet::EMPTY;
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl fmt::Display for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(s.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        for s in ["QUIT", "SIGQUIT", "quit", "sigquit", "Quit", "3"] {
            assert_eq!(s.parse::<Signal>().unwrap(), Signal::Quit, "{s}");
        }
        assert_eq!("usr2".parse::<Signal>().unwrap(), Signal::Usr2);
        assert_eq!("28".parse::<Signal>().unwrap(), Signal::Winch);
        for bad in ["", "SIG", "QUITX", "0", "99", "-3", " 3", "SIGSIGQUIT"] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_and_name() {
        assert_eq!(Signal::Quit.to_string(), "SIGQUIT");
        assert_eq!(Signal::Quit.name(), "QUIT");
        assert_eq!(Signal::Quit.number(), 3);
        for s in Signal::ALL {
            assert_eq!(s.to_string().parse::<Signal>().unwrap(), *s);
            assert_eq!(s.number().to_string().parse::<Signal>().unwrap(), *s);
        }
    }

    #[test]
    fn signal_set_from_status_mask() {
        // nginx master: HUP INT QUIT USR1 USR2 TERM CHLD WINCH IO caught.
        let set = SignalSet::from_hex("0000000018014a07").unwrap();
        for s in [
            Signal::Hup,
            Signal::Int,
            Signal::Quit,
            Signal::Usr2,
            Signal::Winch,
        ] {
            assert!(set.contains(s), "{s}");
        }
        assert!(!set.contains(Signal::Kill));
        assert!(SignalSet::from_hex("zz").is_none());
        let built: SignalSet = [Signal::Usr2, Signal::Winch].into_iter().collect();
        assert_eq!(built.to_string(), "USR2,WINCH");
    }
}
