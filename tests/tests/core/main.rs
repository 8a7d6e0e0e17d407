//! `hotreload-core` as a library against fake-nginx: the one-shot upgrade (`upgrade`), the
//! typed step operations (`steps`), the spawn window
//! (`spawn_window`) and recovery from an interrupted upgrade (`recovery`); the library embedded in a tokio
//! program and cancelled from it (`embed_tokio`);
//! and self-tests of the shared harness (`harness`). One test binary, one build.

mod common;
mod discovery;
mod embed_tokio;
mod harness;
mod recovery;
mod spawn_window;
mod steps;
mod upgrade;
